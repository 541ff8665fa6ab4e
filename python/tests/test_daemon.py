"""The clients against a real ``keywardd`` started by the tests: a key's life (create, verify, revoke),
every management request, refusals with the daemon's code and message, bad frames, pipelined verifies
(sync and asyncio), and a daemon that is gone or does not answer."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from typing import List

from support import (
    Daemon,
    FakeDaemon,
    accept_hello,
    framed,
    raw_connection,
    read_frame,
    require_root,
)

import keyward
from keyward import (
    AuditAction,
    AuditQuery,
    Client,
    ConnectError,
    ConnectionLost,
    CreateRequest,
    CreditChange,
    DaemonError,
    Environment,
    ErrorCode,
    ExpirySpec,
    ImportRequest,
    KeyChanges,
    KeyNotFound,
    KeyStatus,
    KeywardError,
    Limits,
    ListRequest,
    ProtocolError,
    Rate,
    RatePolicy,
    Refill,
    Role,
    Timeout,
    VerifyCode,
    VerifyRequest,
)
from keyward import _codec as c
from keyward import messages as m
from keyward.aio import AsyncClient

UNLIMITED = Limits(rate=RatePolicy.unlimited())


def create(admin: Client, workspace: str = "acme", scopes: List[str] = ["read:tables"], **fields: object) -> m.CreatedKey:
    return admin.create(CreateRequest(workspace, fields.pop("name", "CI deploy"), scopes, **fields))  # type: ignore[arg-type]


class KeyLife(unittest.TestCase):
    """One daemon for the class; each test makes its own keys."""

    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.close()

    def setUp(self) -> None:
        self.admin = self.daemon.admin()
        self.verifier = self.daemon.verifier()

    def tearDown(self) -> None:
        self.admin.close()
        self.verifier.close()

    def test_create_verify_revoke(self) -> None:
        created = create(self.admin, metadata={"plan": "pro", "team": "infra"}, expires=ExpirySpec.days(30))
        token = created.token.expose()
        self.assertTrue(token.startswith("kw_live_"), "a live token")
        self.assertEqual(len(token), 59)
        view = created.key
        self.assertEqual((view.workspace, view.name, view.status), ("acme", "CI deploy", KeyStatus.ACTIVE))
        self.assertEqual(view.masked, token[:8] + "****" + token[-4:])
        self.assertEqual(view.expires_at - view.created_at, 30 * 86_400)

        answer = self.verifier.verify(created.token, scope="read:tables", workspace="acme")
        self.assertIs(answer.code, VerifyCode.VALID)
        self.assertTrue(answer.valid)
        key = answer.key
        assert key is not None
        self.assertEqual((key.id, key.workspace, key.name), (view.id, "acme", "CI deploy"))
        self.assertEqual(key.scopes, ("read:tables",))
        self.assertEqual(dict(key.metadata), {"plan": "pro", "team": "infra"})
        self.assertEqual((key.env, key.role, key.account, key.expires_at), (Environment.LIVE, Role.MEMBER, None,
                                                                            view.expires_at))
        (limit,) = answer.ratelimit
        self.assertEqual((limit.policy, limit.limit, limit.remaining, limit.window_seconds), ("free", 100, 99, 60))
        self.assertIsNone(answer.credits)

        refused = self.verifier.verify(token, scope="write:tables", workspace="acme")
        self.assertIs(refused.code, VerifyCode.INSUFFICIENT_SCOPE)
        self.assertEqual(refused.key.id if refused.key else None, view.id, "a right secret names the key")
        self.assertIs(self.verifier.verify(token, workspace="globex").code, VerifyCode.WRONG_WORKSPACE)
        self.assertIs(self.verifier.verify(token[:-1] + ("A" if token[-1] != "A" else "B")).code,
                      VerifyCode.MALFORMED)
        self.assertIs(self.verifier.verify("").code, VerifyCode.MISSING)

        revoked = self.admin.revoke(view.id)
        self.assertIs(revoked.status, KeyStatus.REVOKED)
        self.assertIsNotNone(revoked.revoked_at)
        after = self.verifier.verify(token)
        self.assertIs(after.code, VerifyCode.REVOKED)
        self.assertFalse(after.valid)
        with self.assertRaises(keyward.Conflict) as caught:
            self.admin.revoke(view.id)
        self.assertIs(caught.exception.code, ErrorCode.CONFLICT)
        self.assertIn("revoked", caught.exception.message)
        self.assertEqual(str(caught.exception), f"CONFLICT: {caught.exception.message}")

    def test_every_management_request(self) -> None:
        admin = self.admin
        workspace = "mgmt"
        first = create(admin, workspace, ["read:all"], name="first key", limits=UNLIMITED)
        second = create(admin, workspace, ["write:forms"], name="second key", env=Environment.TEST,
                        description="for CI")
        self.assertTrue(second.token.expose().startswith("kw_test_"))

        keys = [k.id for k in admin.list(workspace)]
        # Oldest first; two keys made in the same second may come in either order.
        self.assertEqual(sorted(keys), sorted([first.key.id, second.key.id]))
        page = admin.list_page(ListRequest(workspace, limit=1))
        self.assertEqual(([k.id for k in page.keys], page.next), (keys[:1], keys[0]))
        rest = admin.list_page(ListRequest(workspace, after=page.next))
        self.assertEqual(([k.id for k in rest.keys], rest.next), (keys[1:], None))
        self.assertEqual(admin.get(second.key.id).description, "for CI")
        with self.assertRaises(KeyNotFound) as caught:
            admin.get("AbCdEf012345")
        self.assertIn("AbCdEf012345", caught.exception.message)

        edited = admin.edit(second.key.id, KeyChanges(
            name="renamed key", description="", scopes=["read:forms", "write:tables"], metadata={"tier": "gold"},
            rate=RatePolicy.custom("10/min"), named_limits={"exports": Rate.parse("5/h")},
            refill=Refill.monthly(500, day=3), expires=ExpirySpec.never(),
        ))
        self.assertEqual((edited.name, edited.description, edited.expires_at), ("renamed key", None, None))
        self.assertEqual(edited.scopes, ["read:forms", "write:tables"])
        self.assertEqual(edited.metadata, {"tier": "gold"})
        self.assertEqual(edited.limits.rate, RatePolicy.custom(Rate(10, keyward.Period.MINUTE)))
        self.assertEqual(edited.limits.named, {"exports": Rate(5, keyward.Period.HOUR)})
        self.assertEqual(edited.limits.refill, Refill.monthly(500, 3))
        removed = admin.edit(second.key.id, KeyChanges(refill=m.REMOVE_REFILL, named_limits={"exports": None}))
        self.assertIsNone(removed.limits.refill)
        self.assertEqual(removed.limits.named, {})

        self.assertIs(admin.deactivate(first.key.id).status, KeyStatus.INACTIVE)
        self.assertIs(self.verifier.verify(first.token).code, VerifyCode.INACTIVE)
        self.assertIs(admin.activate(first.key.id).status, KeyStatus.ACTIVE)
        self.assertIs(self.verifier.verify(first.token).code, VerifyCode.VALID)

        regenerated = admin.regenerate(first.key.id)
        self.assertEqual(regenerated.key.id, first.key.id)
        self.assertNotEqual(regenerated.token, first.token)
        self.assertIs(self.verifier.verify(regenerated.token).code, VerifyCode.VALID)
        self.assertIs(self.verifier.verify(first.token).code, VerifyCode.NOT_FOUND, "the old token stopped")

        self.assertEqual(admin.credits(first.key.id, CreditChange.set(10)).limits.credits, 10)
        spent = self.verifier.verify(regenerated.token, cost=3)
        self.assertEqual((spent.code, spent.credits), (VerifyCode.VALID, 7))
        self.assertEqual(admin.credits(first.key.id, CreditChange.add(5)).limits.credits, 12)
        self.assertIs(self.verifier.verify(regenerated.token, cost=13).code, VerifyCode.USAGE_EXCEEDED)

        imported = admin.import_key(ImportRequest("sk_live_0123456789abcdef", workspace, "imported key",
                                                  ["read:tables"], metadata={"from": "legacy-system"}))
        self.assertIs(imported.origin, keyward.KeyOrigin.IMPORTED)
        answer = self.verifier.verify("sk_live_0123456789abcdef", scope="read:tables")
        self.assertEqual((answer.code, answer.key.id if answer.key else None), (VerifyCode.VALID, imported.id))
        with self.assertRaises(keyward.Conflict):
            admin.import_key(ImportRequest("sk_live_0123456789abcdef", workspace, "imported twice", ["read:tables"]))

        self.assertEqual(admin.set_account("acct_1", [workspace, "other"]).workspaces, [workspace, "other"])
        self.assertEqual(admin.get_account("acct_1").workspaces, [workspace, "other"])
        self.assertEqual(admin.get_account("acct_unknown").workspaces, [])
        legacy = admin.import_key(ImportRequest("pk_personal_00112233445566", workspace, "personal key",
                                                ["read:tables"], legacy_account="acct_1"))
        self.assertIs(legacy.status, KeyStatus.LEGACY)
        self.assertEqual([k.id for k in admin.list_legacy("acct_1")], [legacy.id])
        self.assertIn(legacy.id, [k.id for k in admin.list_legacy()])

        usage = admin.usage(first.key.id)
        self.assertEqual(usage.key_id, first.key.id)
        self.assertGreaterEqual(usage.totals.get(VerifyCode.VALID, 0), 2)
        self.assertGreaterEqual(usage.totals.get(VerifyCode.INACTIVE, 0), 1)
        per_key = {k.key_id: k for k in admin.workspace_usage(workspace)}
        self.assertIn(first.key.id, per_key)
        self.assertEqual(per_key[first.key.id].total, sum(per_key[first.key.id].totals.values()))

        stats = admin.stats()
        self.assertGreater(stats.verifies.get(VerifyCode.VALID, 0), 0)
        self.assertGreaterEqual(stats.keys.get("active", 0), 2)
        self.assertGreater(stats.verify_latency.count, 0)
        self.assertEqual(stats.verify_latency.buckets[-1][0], float("inf"))
        self.assertIsNone(stats.fleet)
        self.assertIsNone(stats.http, "no [http] listens")

        entries = admin.audit(AuditQuery(key=first.key.id))
        actions = [entry.action for entry in entries]
        self.assertEqual(actions[-1], AuditAction.CREATE, "newest first: the create is last")
        for action in (AuditAction.DEACTIVATE, AuditAction.ACTIVATE, AuditAction.REGENERATE, AuditAction.CREDITS):
            self.assertIn(action, actions)
        self.assertEqual(entries[-1].actor.uid, os.getuid())
        self.assertEqual(entries[-1].actor.pid, os.getpid())
        self.assertTrue(any(e.action is AuditAction.ACCOUNT_SET for e in admin.audit()))

        with self.assertRaises(keyward.InvalidArgument) as caught:
            admin.fleet_status()
        self.assertIs(caught.exception.code, ErrorCode.INVALID_ARGUMENT)
        with self.assertRaises(keyward.InvalidArgument) as caught:
            admin.create(CreateRequest(workspace, "x", ["read:tables"]))
        self.assertIn("name", caught.exception.message)

    def test_an_actor_label_is_audited_and_verifies_are_never_labelled(self) -> None:
        key = create(self.admin, "audited", limits=UNLIMITED)
        with self.daemon.admin(actor="alice@dashboard") as alice:
            alice.deactivate(key.key.id)
            self.assertIs(alice.verify(key.token).code, VerifyCode.INACTIVE, "a verify goes out as it is")
        alice.set_actor(None)
        alice.activate(key.key.id)
        alice.close()
        entries = self.admin.audit(AuditQuery(key=key.key.id))
        labels = {entry.action: entry.actor.label for entry in entries}
        self.assertEqual(labels[AuditAction.DEACTIVATE], "alice@dashboard")
        self.assertIsNone(labels[AuditAction.ACTIVATE])

    def test_management_on_the_verify_socket_is_the_daemons_refusal(self) -> None:
        for client in (self.verifier, self.daemon.verifier(actor="alice")):
            with self.subTest(actor=client.actor):
                with self.assertRaises(keyward.WrongSocket) as caught:
                    client.get("AbCdEf012345")
                error = caught.exception
                self.assertIsInstance(error, DaemonError)
                self.assertIs(error.code, ErrorCode.WRONG_SOCKET)
                self.assertEqual(error.message, "management requests are only accepted on the admin socket")
                self.assertEqual(error.code_name, "WRONG_SOCKET")
                client.ping()  # the connection carries on
            client.close()

        async def over_asyncio() -> DaemonError:
            client = AsyncClient(self.daemon.verify_socket)
            try:
                await client.stats()
            except DaemonError as error:
                await client.ping()
                return error
            finally:
                await client.close()
            raise AssertionError("stats on the verify socket was answered")

        self.assertIs(asyncio.run(over_asyncio()).code, ErrorCode.WRONG_SOCKET)

    def test_a_token_never_prints(self) -> None:
        created = create(self.admin)
        token = created.token.expose()
        secret_part = token[21:53]
        shown = [repr(created), str(created), repr(VerifyRequest(token)), f"{created.token}",
                 repr(m.ImportRequest(token, "ws", "name")), str(m.to_json(created))]
        for text in shown:
            self.assertNotIn(secret_part, text)
        self.assertIn(secret_part, str(m.to_json(created, expose_secrets=True)))

    def test_the_async_client_does_everything_the_sync_one_does(self) -> None:
        async def scenario() -> None:
            async with AsyncClient(self.daemon.admin_socket) as admin:
                created = await admin.create(CreateRequest("async", "async key", ["read:tables"], limits=UNLIMITED))
                labelled = admin.with_actor("bob")
                self.assertIs((await labelled.deactivate(created.key.id)).status, KeyStatus.INACTIVE)
                self.assertIs((await admin.verify(created.token)).code, VerifyCode.INACTIVE)
                await admin.activate(created.key.id)
                self.assertIs((await admin.verify(created.token)).code, VerifyCode.VALID)
                self.assertEqual([k.id for k in await admin.list("async")], [created.key.id])
                entries = await admin.audit(AuditQuery(key=created.key.id))
                self.assertEqual({e.action: e.actor.label for e in entries}[AuditAction.DEACTIVATE], "bob")
                self.assertGreater((await admin.stats()).connections_open, 0)
                self.assertEqual((await admin.usage(created.key.id)).key_id, created.key.id)
                with self.assertRaises(KeyNotFound):
                    await admin.revoke("AbCdEf012345")
                self.assertIs((await admin.revoke(created.key.id)).status, KeyStatus.REVOKED)
                self.assertIs((await admin.verify(created.token)).code, VerifyCode.REVOKED)

        asyncio.run(scenario())


class Pipelining(unittest.TestCase):
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon()
        with cls.daemon.admin() as admin:
            cls.valid = create(admin, "pipes", ["read:tables"], limits=UNLIMITED).token.expose()
            revoked = create(admin, "pipes", ["read:tables"], limits=UNLIMITED)
            admin.revoke(revoked.key.id)
            cls.revoked = revoked.token.expose()
            # A key never verified yet: its first answer waits for Argon2 while warm ones overtake it.
            cls.cold = create(admin, "pipes", ["read:tables"], limits=UNLIMITED).token.expose()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.close()

    def mixed(self, n: int) -> List[tuple]:
        """``n`` verifies and the code each must get, in a mix that cannot come back right by accident."""
        cases = [
            (VerifyRequest(self.valid, scope="read:tables"), VerifyCode.VALID),
            (VerifyRequest(self.valid, scope="write:tables"), VerifyCode.INSUFFICIENT_SCOPE),
            (VerifyRequest(self.valid, workspace="other"), VerifyCode.WRONG_WORKSPACE),
            (VerifyRequest(self.revoked), VerifyCode.REVOKED),
            (VerifyRequest("kw_live_not-a-token"), VerifyCode.MALFORMED),
            (VerifyRequest(""), VerifyCode.MISSING),
            (VerifyRequest(self.valid[:21] + "0" * 32 + self.valid[53:]), VerifyCode.MALFORMED),
        ]
        return [cases[(i * 7 + i // 3) % len(cases)] for i in range(n)]

    def test_two_hundred_verifies_in_flight_on_one_sync_connection(self) -> None:
        cases = [(VerifyRequest(self.cold), VerifyCode.VALID)] + self.mixed(199)
        with self.daemon.admin() as admin:
            opened = admin.stats().connections_total
            with self.daemon.verifier() as client:
                answers = client.verify_many([request for request, _ in cases])
                self.assertEqual([a.code for a in answers], [code for _, code in cases])
                self.assertTrue(all(a.key is not None for a in answers if a.code is VerifyCode.VALID))
                # And with a window smaller than the batch, refilled as answers arrive.
                answers = client.verify_many([request for request, _ in cases], window=16)
                self.assertEqual([a.code for a in answers], [code for _, code in cases])
                client.ping()
            self.assertEqual(admin.stats().connections_total, opened + 1, "every verify on one connection")

    def test_two_hundred_concurrent_verifies_on_one_asyncio_connection(self) -> None:
        cases = self.mixed(200)

        async def scenario() -> None:
            client = AsyncClient(self.daemon.verify_socket)
            async with AsyncClient(self.daemon.admin_socket) as admin:
                opened = (await admin.stats()).connections_total
                try:
                    answers = await asyncio.gather(*(client.verify(request) for request, _ in cases))
                    self.assertEqual([a.code for a in answers], [code for _, code in cases])
                    answers = await client.verify_many(request for request, _ in cases)
                    self.assertEqual([a.code for a in answers], [code for _, code in cases])
                finally:
                    await client.close()
                self.assertEqual((await admin.stats()).connections_total, opened + 1, "all on one connection")

        asyncio.run(scenario())

    def test_answers_that_come_back_in_reverse_order_are_matched_by_id(self) -> None:
        # A fake daemon that reads a whole batch and answers it backwards, each answer naming its request's
        # index as the key's name: only matching by id puts them back in place.
        def backwards(conn: socket.socket) -> None:
            accept_hello(conn)
            while True:
                batch = [read_frame(conn)]
                conn.settimeout(0.2)
                try:
                    while True:
                        batch.append(read_frame(conn))
                except socket.timeout:
                    pass
                conn.settimeout(None)
                out = b""
                for payload in reversed([p for p in batch if p is not None]):
                    frame = c.decode(m.REQUEST_FRAME, payload)
                    key = m.VerifiedKey("AbCdEf012345", "ws", frame.request.token.expose(), Environment.LIVE, [],
                                        None, Role.MEMBER, {}, None)
                    answer = m.VerifyAnswer(VerifyCode.VALID, key, None, [], None)
                    out += framed(c.encode(m.REPLY_FRAME, m.ReplyFrame(frame.id, answer)))
                conn.sendall(out)

        fake = FakeDaemon(backwards)
        try:
            tokens = [f"token-{i}" for i in range(50)]
            with Client(fake.path) as client:
                names = [a.key.name for a in client.verify_many(tokens) if a.key]
            self.assertEqual(names, tokens)

            async def scenario() -> List[str]:
                client = AsyncClient(fake.path)
                answers = await asyncio.gather(*(client.verify(t) for t in tokens))
                await client.close()
                return [a.key.name for a in answers if a.key]

            self.assertEqual(asyncio.run(scenario()), tokens)
        finally:
            fake.close()


class BadFrames(unittest.TestCase):
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.close()

    def ping(self, sock: socket.socket, request_id: int) -> None:
        sock.sendall(m.encode_request(request_id, m.Ping()))
        self.assertEqual(m.decode_reply(read_frame(sock) or b""), (request_id, m.Pong()))

    def test_garbage_without_a_readable_id_is_answered_with_id_0_and_the_connection_carries_on(self) -> None:
        with raw_connection(self.daemon.verify_socket) as sock:
            sock.sendall(framed(b"\xff" * 12))  # 0xff is no varint marker: not even an id
            answered, reply = m.decode_reply(read_frame(sock) or b"")
            self.assertEqual(answered, 0)
            assert isinstance(reply, m.ErrorReply)
            self.assertIs(reply.code, ErrorCode.BAD_FRAME)
            self.assertIn("undecodable request", reply.message)
            self.ping(sock, 5)

    def test_garbage_after_a_readable_id_is_answered_with_that_id(self) -> None:
        with raw_connection(self.daemon.admin_socket) as sock:
            sock.sendall(framed(b"\x4d\xc8\x01"))  # id 77, then request variant 200
            answered, reply = m.decode_reply(read_frame(sock) or b"")
            self.assertEqual(answered, 77)
            assert isinstance(reply, m.ErrorReply)
            self.assertIs(reply.code, ErrorCode.BAD_FRAME)
            sock.sendall(framed(m.encode_request(78, m.Ping())[4:] + b"\x00"))  # a trailing byte
            answered, reply = m.decode_reply(read_frame(sock) or b"")
            self.assertEqual((answered, type(reply)), (78, m.ErrorReply))
            self.ping(sock, 79)

    def test_an_oversized_frame_is_refused_and_the_connection_closed(self) -> None:
        with raw_connection(self.daemon.verify_socket) as sock:
            sock.sendall(struct.pack(">I", 64 * 1024 + 1))
            answered, reply = m.decode_reply(read_frame(sock) or b"")
            self.assertEqual(answered, 0)
            assert isinstance(reply, m.ErrorReply)
            self.assertIs(reply.code, ErrorCode.BAD_FRAME)
            self.assertIn("exceeds", reply.message)
            self.assertIsNone(read_frame(sock), "then the daemon closes")

    def test_a_handshake_of_another_version_is_rejected_with_the_daemons_message(self) -> None:
        with raw_connection(self.daemon.verify_socket, handshake=False) as sock:
            sock.sendall(framed(c.encode(m.HELLO, m.Hello(300))))
            reply = m.decode_hello_reply(read_frame(sock) or b"")
            assert isinstance(reply, m.ErrorReply)
            self.assertIs(reply.code, ErrorCode.UNSUPPORTED_VERSION)
            self.assertIn("300", reply.message)
            self.assertIsNone(read_frame(sock))

    def test_a_reply_the_client_cannot_read_fails_that_request_only(self) -> None:
        # A daemon of a later version could answer with a reply variant this package does not know: the
        # request fails with ProtocolError, the connection stays (its next request is answered on it).
        def newer(conn: socket.socket) -> None:
            accept_hello(conn)
            first = read_frame(conn)
            assert first is not None
            conn.sendall(framed(c.Reader(first).data[:1] + b"\x63"))  # the id, then reply variant 99
            while True:
                payload = read_frame(conn)
                if payload is None:
                    return
                conn.sendall(framed(c.encode(m.REPLY_FRAME, m.ReplyFrame(c.Reader(payload).uint(), m.Pong()))))

        for flavour in ("sync", "asyncio"):
            fake = FakeDaemon(newer)
            try:
                with self.subTest(flavour):
                    if flavour == "sync":
                        with Client(fake.path) as client:
                            with self.assertRaises(ProtocolError):
                                client.ping()
                            client.ping()
                    else:
                        async def scenario() -> None:
                            client = AsyncClient(fake.path)
                            with self.assertRaises(ProtocolError):
                                await client.ping()
                            await client.ping()
                            await client.close()

                        asyncio.run(scenario())
                    self.assertEqual(fake.connections, 1)
            finally:
                fake.close()

    def test_a_refused_handshake_is_the_daemons_error_even_when_sent_before_the_hello_was_read(self) -> None:
        # A daemon that refuses a peer writes its rejection at once and closes; the client's hello may then
        # meet a closed socket, and the daemon's reason must still be what the caller sees.
        rejection = c.encode(m.HELLO_REPLY, m.ErrorReply(ErrorCode.FORBIDDEN, "this user may not use the verify "
                                                                             "socket: it is not in verify_groups"))

        def refusing(conn: socket.socket) -> None:
            conn.sendall(framed(rejection))
            conn.close()

        fake = FakeDaemon(refusing)
        try:
            with self.assertRaises(keyward.Forbidden) as caught:
                Client(fake.path).ping()
            self.assertTrue(caught.exception.handshake)
            self.assertIn("verify_groups", caught.exception.message)

            async def scenario() -> None:
                client = AsyncClient(fake.path)
                with self.assertRaises(keyward.Forbidden) as caught:
                    await client.verify("kw_live_x")
                self.assertTrue(caught.exception.handshake)
                await client.close()

            asyncio.run(scenario())
        finally:
            fake.close()

    def test_an_oversized_reply_is_refused_by_the_client(self) -> None:
        def huge(conn: socket.socket) -> None:
            accept_hello(conn)
            read_frame(conn)
            conn.sendall(struct.pack(">I", 64 * 1024 * 1024))
            time.sleep(2)

        fake = FakeDaemon(huge)
        try:
            with Client(fake.path) as client:
                with self.assertRaises(ProtocolError) as caught:
                    client.ping()
                self.assertIn("exceeds", str(caught.exception))

            async def scenario() -> None:
                client = AsyncClient(fake.path)
                with self.assertRaises(ProtocolError):
                    await client.ping()
                await client.close()

            asyncio.run(scenario())
        finally:
            fake.close()


class Unreachable(unittest.TestCase):
    """A daemon that is gone, or does not answer, is a clear exception soon, never a hang."""

    def test_a_missing_socket_is_a_connect_error(self) -> None:
        path = "/nonexistent/keyward/verify.sock"
        started = time.monotonic()
        with self.assertRaises(ConnectError) as caught:
            Client(path).ping()
        self.assertIn(path, str(caught.exception))
        self.assertIn("is the daemon running?", str(caught.exception))
        self.assertEqual(caught.exception.code_name, "UNREACHABLE")
        with self.assertRaises(ConnectError):
            asyncio.run(AsyncClient(path).ping())
        self.assertLess(time.monotonic() - started, 5)

    def test_a_socket_file_nobody_listens_on_is_a_connect_error(self) -> None:
        directory = tempfile.mkdtemp(prefix="kwpy-")
        path = os.path.join(directory, "stale.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)  # the file stays; nothing ever listens
        stale.close()
        try:
            with self.assertRaises(ConnectError) as caught:
                Client(path).ping()
            self.assertIn("nothing listens", str(caught.exception))
        finally:
            shutil.rmtree(directory)

    def test_a_daemon_that_never_answers_is_a_timeout(self) -> None:
        for answers_hello in (False, True):
            def silent(conn: socket.socket, answers_hello: bool = answers_hello) -> None:
                if answers_hello:
                    accept_hello(conn)
                time.sleep(5)

            fake = FakeDaemon(silent)
            try:
                with self.subTest(answers_hello=answers_hello):
                    started = time.monotonic()
                    with self.assertRaises(Timeout) as caught:
                        Client(fake.path, timeout=0.3).verify("kw_live_x")
                    self.assertEqual(caught.exception.code_name, "TIMEOUT")

                    async def scenario() -> None:
                        client = AsyncClient(fake.path, timeout=0.3)
                        try:
                            await client.verify("kw_live_x")
                        finally:
                            await client.close()

                    with self.assertRaises(Timeout):
                        asyncio.run(scenario())
                    self.assertLess(time.monotonic() - started, 3)
            finally:
                fake.close()

    def test_a_daemon_that_dies_fails_requests_at_once_and_a_new_one_is_found_again(self) -> None:
        daemon = Daemon()
        try:
            with daemon.admin() as admin:
                token = create(admin, limits=UNLIMITED).token
            sync_client = daemon.verifier()
            self.assertTrue(sync_client.verify(token).valid)

            async def scenario() -> None:
                client = AsyncClient(daemon.verify_socket)
                self.assertTrue((await client.verify(token)).valid)
                daemon.kill()
                started = time.monotonic()
                with self.assertRaises(KeywardError) as caught:
                    await client.verify(token)
                self.assertIsInstance(caught.exception, (ConnectError, ConnectionLost))
                self.assertLess(time.monotonic() - started, 3)
                daemon.start()
                self.assertTrue((await client.verify(token)).valid, "the next request reconnects")
                await client.close()

            asyncio.run(scenario())
            daemon.kill()
            with self.assertRaises(KeywardError) as caught:
                sync_client.verify(token)
            self.assertIsInstance(caught.exception, (ConnectError, ConnectionLost))
            daemon.start()
            self.assertTrue(sync_client.verify(token).valid, "the next request reconnects")
            sync_client.close()
        finally:
            daemon.close()

    def test_a_socket_of_another_user_is_refused_before_anything_is_sent(self) -> None:
        require_root("listen on a socket as another user")
        directory = tempfile.mkdtemp(prefix="kwpy-")
        os.chmod(directory, 0o777)
        path = os.path.join(directory, "other.sock")
        listener = (
            "import os, socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)\n"
            "print('listening', flush=True)\n"
            "c, _ = s.accept(); c.settimeout(5)\n"
            "try:\n    data = c.recv(100)\nexcept OSError:\n    data = b''\n"
            "print('got ' + data.hex(), flush=True)\n"
        )

        def as_nobody() -> None:
            os.setgid(65534)
            os.setuid(65534)

        # A Python every uid can run (root's own may live under its 0700 home).
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        child = subprocess.Popen([python, "-c", listener, path], stdout=subprocess.PIPE, cwd="/",
                                 preexec_fn=as_nobody)
        try:
            assert child.stdout is not None
            self.assertEqual(child.stdout.readline().strip(), b"listening")
            with self.assertRaises(keyward.UntrustedDaemon) as caught:
                Client(path).verify("kw_live_secret")
            self.assertEqual(caught.exception.uid, 65534)
            self.assertIn("KEYWARD_DAEMON_USER=65534", str(caught.exception))
            self.assertEqual(child.stdout.readline().strip(), b"got", "not even the hello was sent")
        finally:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
            shutil.rmtree(directory)


if __name__ == "__main__":
    unittest.main()
