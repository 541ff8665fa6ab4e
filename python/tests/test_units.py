"""The package's parts without a daemon: the encoding's edge cases, codes, secrets, errors, default
paths, and the HTTP refusals (checked against the Rust mapping in ``protocol/src/http.rs``)."""

from __future__ import annotations

import json
import os
import pickle
import unittest
from unittest import mock

import support  # noqa: F401  (puts the package on sys.path)

import keyward
from keyward import _codec as c
from keyward import _trust
from keyward import http as kh
from keyward import messages as m
from keyward.codes import ErrorCode, VerifyCode


def enc(kind: c.WireType, value: object) -> str:
    return c.encode(kind, value).hex()


class Encoding(unittest.TestCase):
    def test_varints_at_every_width(self) -> None:
        cases = {0: "00", 250: "fa", 251: "fbfb00", 300: "fb2c01", 65535: "fbffff", 65536: "fc00000100",
                 2**32: "fd0000000001000000", 2**64 - 1: "fdffffffffffffffff"}
        for value, hexed in cases.items():
            self.assertEqual(enc(c.U64, value), hexed)
            self.assertEqual(c.decode(c.U64, bytes.fromhex(hexed)), value)
        with self.assertRaises(ValueError):
            enc(c.U16, 65536)
        with self.assertRaises(ValueError):
            enc(c.U64, -1)

    def test_a_decoder_takes_a_wider_marker_than_needed_but_never_one_wider_than_the_type(self) -> None:
        self.assertEqual(c.decode(c.U32, bytes.fromhex("fb0500")), 5)  # bincode accepts non-shortest forms
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.U16, bytes.fromhex("fc01000000"))
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.U32, bytes.fromhex("fd0100000000000000"))
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.U64, bytes.fromhex("ff"))

    def test_signed_integers_are_zigzag(self) -> None:
        cases = {0: "00", -1: "01", 1: "02", -2: "03", 125: "fa", -126: "fbfb00", -(2**63): "fdffffffffffffffff",
                 2**63 - 1: "fdfeffffffffffffff"}
        for value, hexed in cases.items():
            self.assertEqual(enc(c.I64, value), hexed)
            self.assertEqual(c.decode(c.I64, bytes.fromhex(hexed)), value)

    def test_u8_bool_float_string_option_map(self) -> None:
        self.assertEqual(enc(c.BYTE, 251), "fb", "a u8 is a raw byte, never a varint")
        self.assertEqual(enc(c.BOOL, True), "01")
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.BOOL, b"\x02")
        self.assertEqual(enc(c.FLOAT, 1.0), "000000000000f03f")
        self.assertEqual(enc(c.STR, "é"), "02c3a9")
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.STR, b"\x01\xff")
        self.assertEqual(enc(c.Opt(c.U32), None), "00")
        self.assertEqual(enc(c.Opt(c.U32), 5), "0105")
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.Opt(c.U32), b"\x02\x05")
        # A BTreeMap is written in key order, whatever order the dict has.
        self.assertEqual(enc(c.STR_MAP, {"b": "1", "a": "2"}), "0201610132" + "01620131")

    def test_a_u16_keyed_map_is_varints_on_the_wire_and_decimal_strings_in_json(self) -> None:
        answers = m._struct(m.HttpFigures)
        figures = m.HttpFigures(connections_open=0, connections_total=1, connections_forbidden=0,
                                answers={401: 3, 200: 12})
        self.assertEqual(enc(answers, figures), "000100" + "02c80cfb910103")
        self.assertEqual(answers.to_json(figures, False)["answers"], {"200": 12, "401": 3})
        self.assertEqual(list(answers.to_json(figures, False)["answers"]), ["200", "401"], "numeric order")
        self.assertEqual(answers.from_json(answers.to_json(figures, False)), figures)
        for bad in ("abc", "-1", "65536", "", "٣"):
            with self.assertRaises(ValueError):
                c.U16_KEY.from_json(bad)
        with self.assertRaises(TypeError):
            c.U16_KEY.from_json(200)

    def test_a_length_that_claims_more_than_is_left_is_refused_before_anything_is_built(self) -> None:
        with self.assertRaises(keyward.ProtocolError):
            c.decode(c.STRS, bytes.fromhex("fdffffffffffffff7f"))
        hostile = bytes([7, 1, 252, 0xFF, 0xFF, 0xFF, 0xF0])  # a Verify whose token claims 4 GB
        with self.assertRaises(keyward.ProtocolError):
            c.decode(m.REQUEST_FRAME, hostile)

    def test_the_handshake_bytes_are_fixed(self) -> None:
        self.assertEqual(m.HELLO_FRAME, b"\x00\x00\x00\x01\x02")
        self.assertEqual(m.decode_hello_reply(b"\x00\x02"), m.HelloAccepted(2))

    def test_variant_indexes(self) -> None:
        index = lambda request: m.encode_request(1, request)[5]  # noqa: E731 - after the header and id
        self.assertEqual(index(m.Ping()), 0)
        self.assertEqual(index(m.Revoke("x")), 5)
        self.assertEqual(index(m.As("ops", m.Ping())), 18)
        self.assertEqual(index(m.Stats()), 19)
        self.assertEqual(index(m.FleetStatus()), 21)

    def test_key_changes_refill_has_three_states(self) -> None:
        tail = lambda refill: enc(m._struct(m.KeyChanges), m.KeyChanges(refill=refill))[-8:]  # noqa: E731
        self.assertTrue(tail(None).endswith("00"))
        self.assertTrue(tail(m.REMOVE_REFILL).endswith("0100"))
        self.assertTrue(tail(m.Refill.daily(5)).endswith("01010005"))

    def test_unknown_codes_of_a_newer_daemon_are_kept_not_fatal(self) -> None:
        # A reply naming VerifyCode 99 decodes; the code is not valid, and its stable name says unknown.
        payload = bytes([3, 1, 99, 0, 0, 0, 0])
        request_id, answer = m.decode_reply(payload)
        assert isinstance(answer, m.VerifyAnswer)
        self.assertEqual((request_id, int(answer.code), answer.valid), (3, 99, False))
        self.assertFalse(answer.code.is_known)
        self.assertEqual(str(answer.code), "UNKNOWN_99")
        error = keyward.DaemonError.from_reply(ErrorCode(40), "new")
        self.assertIs(type(error), keyward.DaemonError)
        self.assertEqual(str(error), "UNKNOWN_40: new")

    def test_an_unknown_reply_variant_is_a_protocol_error_whose_id_is_still_readable(self) -> None:
        with self.assertRaises(keyward.ProtocolError):
            m.decode_reply(bytes([9, 99]))
        self.assertEqual(m.peek_id(bytes([9, 99])), 9)
        self.assertIsNone(m.peek_id(b"\xff"))


class Values(unittest.TestCase):
    def test_codes_spell_as_the_protocol_does(self) -> None:
        self.assertEqual(str(VerifyCode.INSUFFICIENT_SCOPE), "INSUFFICIENT_SCOPE")
        self.assertEqual(VerifyCode.INSUFFICIENT_SCOPE.serde_name(), "InsufficientScope")
        self.assertEqual(str(keyward.KeyStatus.INACTIVE), "inactive")
        self.assertEqual(str(keyward.AuditAction.ACCOUNT_SET), "account_set")
        self.assertEqual(ErrorCode.parse("key_not_found"), ErrorCode.KEY_NOT_FOUND)
        self.assertEqual([int(code) for code in VerifyCode], list(range(13)))
        self.assertEqual([int(code) for code in ErrorCode], list(range(13)))

    def test_a_secret_never_prints(self) -> None:
        secret = m.Secret("kw_live_hunter2")
        for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr(m.VerifyRequest(secret)),
                      repr(m.CreatedKey(secret, None)), json.dumps(m.to_json(m.VerifyRequest(secret)))):  # type: ignore[arg-type]
            self.assertNotIn("hunter2", shown)
        self.assertEqual(secret.expose(), "kw_live_hunter2")
        self.assertEqual(secret, m.Secret("kw_live_hunter2"))
        self.assertEqual(pickle.loads(pickle.dumps(secret)), secret)

    def test_expiry_and_rate_spellings(self) -> None:
        for text in ("never", "15d", "90d", "6m", "1y"):
            self.assertEqual(str(m.ExpirySpec.parse(text)), text)
        self.assertEqual(m.ExpirySpec.parse("2027-01-31T00:00:00Z"), m.ExpirySpec.at(1_801_353_600))
        for bad in ("7d", "tomorrow", "2027-01-31T00:00:00"):
            with self.assertRaises(ValueError):
                m.ExpirySpec.parse(bad)
        self.assertEqual(m.Rate.parse("100/min"), m.Rate(100, keyward.Period.MINUTE))
        self.assertEqual(str(m.Rate.parse("7/d")), "7/d")
        self.assertEqual(str(m.Refill.monthly(9, 31)), "9/month@31")

    def test_errors_carry_the_daemons_code_and_message_and_pickle(self) -> None:
        error = keyward.DaemonError.from_reply(ErrorCode.KEY_NOT_FOUND, "no key with id AbCdEf012345")
        self.assertIsInstance(error, keyward.KeyNotFound)
        self.assertEqual((error.code, error.message, error.code_name), (ErrorCode.KEY_NOT_FOUND,
                                                                       "no key with id AbCdEf012345", "KEY_NOT_FOUND"))
        again = pickle.loads(pickle.dumps(error))
        self.assertEqual((type(again), again.code, again.message), (keyward.KeyNotFound, error.code, error.message))
        self.assertTrue(issubclass(keyward.Timeout, TimeoutError))
        self.assertEqual(keyward.Timeout(1.5).code_name, "TIMEOUT")

    def test_default_paths_follow_the_rust_clients(self) -> None:
        env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(keyward.Client().socket_path, "/run/user/1000/keyward/verify.sock")
            self.assertEqual(keyward.Client(admin=True).socket_path, "/run/user/1000/keyward/admin.sock")
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(keyward.Client().socket_path, f"/tmp/keyward-{os.getuid()}/verify.sock")
        with mock.patch.dict(os.environ, {"KEYWARD_SOCKET": "/a.sock", "KEYWARD_ADMIN_SOCKET": "/b.sock"}):
            self.assertEqual(keyward.Client().socket_path, "/a.sock")
            self.assertEqual(keyward.Client(admin=True).socket_path, "/b.sock")
            self.assertEqual(keyward.Client("/c.sock").socket_path, "/c.sock")

    def test_who_is_trusted_to_listen(self) -> None:
        self.assertTrue(_trust.accepts(0, None))
        self.assertTrue(_trust.accepts(os.getuid(), None))
        self.assertTrue(_trust.accepts(54_321, 54_321))
        self.assertEqual(_trust.daemon_uid("4242"), 4242)
        self.assertEqual(_trust.daemon_uid("root"), 0)
        with mock.patch.dict(os.environ, {"KEYWARD_DAEMON_USER": "777"}):
            self.assertEqual(_trust.daemon_uid(None), 777)
        with self.assertRaises(ValueError):
            _trust.daemon_uid("no-such-user-x")


def answer(code: VerifyCode, retry_after_ms: object = None, ratelimit: object = ()) -> m.VerifyAnswer:
    return m.VerifyAnswer(code, None, retry_after_ms, list(ratelimit), None)  # type: ignore[arg-type]


class Http(unittest.TestCase):
    def test_every_401_is_invalid_api_key_with_a_specific_message(self) -> None:
        for code, says in [(VerifyCode.MALFORMED, "not just its id"), (VerifyCode.NOT_FOUND, "is invalid"),
                           (VerifyCode.EXPIRED, "expired"), (VerifyCode.REVOKED, "revoked"),
                           (VerifyCode.INACTIVE, "deactivated"), (VerifyCode.LEGACY_SUNSET, "Legacy personal")]:
            refusal = kh.refusal_for(answer(code))
            assert refusal is not None
            self.assertEqual((refusal.status, refusal.code, refusal.kind), (401, "invalid_api_key",
                                                                           "authentication_error"))
            self.assertIn(says, refusal.message)
            self.assertEqual(refusal.headers()["WWW-Authenticate"], 'Bearer error="invalid_token"')
        refusal = kh.refusal_for(answer(VerifyCode.NOT_FOUND))
        assert refusal is not None
        self.assertEqual(refusal.json(), '{"error":{"code":"invalid_api_key","message":"The API key provided is '
                                         'invalid","type":"authentication_error"}}')
        self.assertEqual(refusal.headers()["Cache-Control"], "no-store")
        self.assertEqual(refusal.headers()["Content-Type"], "application/json")

    def test_forbidden_names_the_scope_or_workspace(self) -> None:
        refusal = kh.refusal_for(answer(VerifyCode.INSUFFICIENT_SCOPE), scope="write:tables")
        assert refusal is not None
        self.assertEqual(refusal.body(), {"error": {"code": "insufficient_scope", "message":
                                                    "This key lacks the write:tables scope", "type": "permission_error"}})
        self.assertEqual(refusal.headers()["WWW-Authenticate"], 'Bearer error="insufficient_scope", scope="write:tables"')
        refusal = kh.refusal_for(answer(VerifyCode.WRONG_WORKSPACE), workspace="acme")
        assert refusal is not None
        self.assertEqual((refusal.status, refusal.code), (403, "wrong_workspace"))
        self.assertIn("workspace acme", refusal.message)

    def test_too_many_requests_says_when_to_retry(self) -> None:
        refusal = kh.refusal_for(answer(VerifyCode.RATE_LIMITED, 1_001))
        assert refusal is not None
        self.assertEqual((refusal.status, refusal.code, refusal.kind), (429, "rate_limited", "rate_limit_error"))
        self.assertEqual(refusal.headers()["Retry-After"], "2", "rounded up")
        self.assertEqual(refusal.message, "Rate limit exceeded: retry after 2 seconds")
        refusal = kh.refusal_for(answer(VerifyCode.RATE_LIMITED, 0))
        assert refusal is not None
        self.assertEqual(refusal.retry_after, 1, "never 0")
        refusal = kh.refusal_for(answer(VerifyCode.USAGE_EXCEEDED))
        assert refusal is not None
        self.assertEqual((refusal.status, refusal.code, refusal.retry_after), (429, "usage_exceeded", None))

    def test_valid_goes_on_and_a_daemon_that_cannot_be_asked_is_503(self) -> None:
        key = m.VerifiedKey("AbCdEf012345", "acme", "k", keyward.Environment.LIVE, (), None, keyward.Role.MEMBER, {},
                            None)
        self.assertIsNone(kh.refusal_for(m.VerifyAnswer(VerifyCode.VALID, key, None, [], None)))
        self.assertEqual(kh.refusal_for(answer(VerifyCode.VALID)).status, 503, "VALID without a key")  # type: ignore[union-attr]
        unavailable = kh.unavailable()
        self.assertEqual((unavailable.status, unavailable.code, unavailable.kind, unavailable.headers()["Retry-After"]),
                         (503, "auth_unavailable", "api_error", "1"))

    def test_bearer_tokens(self) -> None:
        self.assertEqual(kh.bearer_token("Bearer kw_live_x").expose(), "kw_live_x")
        self.assertEqual(kh.bearer_token("  bEaReR \t kw_live_x  ").expose(), "kw_live_x")
        for value, says, challenge in [
            (None, "Missing Authorization header", "Bearer"),
            ([], "Missing Authorization header", "Bearer"),
            (["Bearer a", "Bearer b"], "Send one Authorization header", 'Bearer error="invalid_token"'),
            ("Basic dXNlcjpwYXNz", "Use the Bearer scheme", 'Bearer error="invalid_token"'),
            ("kw_live_x", "Use the Bearer scheme", 'Bearer error="invalid_token"'),
            ("Bearer   ", "The API key is empty", 'Bearer error="invalid_token"'),
            ("Bearer kw_live_é", "not readable text", 'Bearer error="invalid_token"'),
        ]:
            with self.assertRaises(kh.Refusal) as caught:
                kh.bearer_token(value)
            self.assertEqual(caught.exception.status, 401)
            self.assertIn(says, caught.exception.message)
            self.assertEqual(caught.exception.challenge, challenge)

    def test_rate_limit_headers(self) -> None:
        now = 1_795_435_200_000
        limits = [m.RateLimitStatus("free", 100, 42, now + 29_001, 60), m.RateLimitStatus("exports", 10, 3, now + 5, 3600)]
        headers = kh.ratelimit_headers(limits, now)
        self.assertEqual(headers["RateLimit-Limit"], "10")
        self.assertEqual(headers["RateLimit-Remaining"], "3")
        self.assertEqual(headers["RateLimit-Reset"], "1")
        self.assertEqual(headers["RateLimit-Policy"], '"free";q=100;w=60, "exports";q=10;w=3600')
        self.assertEqual(headers["RateLimit"], '"free";r=42;t=30, "exports";r=3;t=1')
        self.assertEqual(kh.ratelimit_headers([], now), {})
        self.assertEqual(kh.scope_for("get", "tables"), "read:tables")
        self.assertEqual(kh.scope_for("POST", "tables"), "write:tables")


if __name__ == "__main__":
    unittest.main()
