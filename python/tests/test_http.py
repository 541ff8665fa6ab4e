"""``keyward.http`` answers as the daemon's own HTTP door does: the mapping from a verify answer to status,
JSON body, challenge and ``Retry-After`` is written once in Rust (``protocol/src/http.rs``) and again here,
so a real ``keywardd`` with its forward-auth endpoint on is asked about the same key in the same state, and
the two answers must agree."""

from __future__ import annotations

import http.client
import json
import socket
import unittest
from typing import Dict, Optional, Tuple

from support import Daemon

from keyward import CreateRequest, Limits, RatePolicy, Rate, Period, VerifyCode
from keyward import http as kwhttp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TheHttpDoorAgrees(unittest.TestCase):
    daemon: Daemon
    port: int

    @classmethod
    def setUpClass(cls) -> None:
        cls.port = free_port()
        cls.daemon = Daemon(f'\n[http]\nlisten = ["127.0.0.1:{cls.port}"]\n')

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.close()

    def setUp(self) -> None:
        self.admin = self.daemon.admin()
        self.verifier = self.daemon.verifier()

    def tearDown(self) -> None:
        self.admin.close()
        self.verifier.close()

    def endpoint(self, token: str, scope: Optional[str], workspace: Optional[str]) -> Tuple[int, Dict[str, str], dict]:
        headers = {"Authorization": f"Bearer {token}"}
        if scope:
            headers["X-Keyward-Scope"] = scope
        if workspace:
            headers["X-Keyward-Workspace"] = workspace
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/auth", headers=headers)
            response = conn.getresponse()
            body = response.read()
            answer = json.loads(body) if body else {}
            return response.status, {name.lower(): value for name, value in response.getheaders()}, answer
        finally:
            conn.close()

    def assert_same(self, token: str, code: VerifyCode, scope: Optional[str] = None, workspace: Optional[str] = None) -> None:
        """The endpoint's answer, then this package's refusal for a verify of the same request that spends
        nothing (cost 0 answers as cost 1 would)."""
        status, headers, body = self.endpoint(token, scope, workspace)
        answer = self.verifier.verify(token, scope=scope, workspace=workspace, cost=0)
        self.assertIs(answer.code, code)
        refusal = kwhttp.refusal_for(answer, scope=scope, workspace=workspace)
        assert refusal is not None
        self.assertEqual(status, refusal.status, body)
        self.assertEqual(headers.get("www-authenticate"), refusal.challenge, body)
        if code is VerifyCode.RATE_LIMITED:
            # The two were asked a few milliseconds apart: the whole seconds may differ by one.
            self.assertEqual(body["error"]["code"], refusal.code)
            self.assertEqual(body["error"]["type"], refusal.kind)
            assert refusal.retry_after is not None
            self.assertLessEqual(abs(int(headers["retry-after"]) - refusal.retry_after), 1)
        else:
            self.assertEqual(body, refusal.body())
            self.assertEqual(headers.get("retry-after"), None if refusal.retry_after is None else str(refusal.retry_after))

    def create(self, **limits: object) -> Tuple[str, str]:
        request = CreateRequest("acme", "http door", ["read:tables"], limits=Limits(**limits))  # type: ignore[arg-type]
        created = self.admin.create(request)
        return created.token.expose(), created.key.id

    def test_every_refusal_of_a_verify_answer_matches_the_endpoints(self) -> None:
        token, key_id = self.create()
        self.assert_same(token, VerifyCode.INSUFFICIENT_SCOPE, scope="write:tables")
        self.assert_same(token, VerifyCode.WRONG_WORKSPACE, workspace="globex")
        wrong = token[:21] + ("A" if token[21] != "A" else "B") + token[22:]
        self.assert_same(wrong, VerifyCode.MALFORMED)  # the checksum no longer holds
        self.assert_same(token[:-1], VerifyCode.MALFORMED)
        self.admin.revoke(key_id)
        self.assert_same(token, VerifyCode.REVOKED)

        limited, _ = self.create(rate=RatePolicy.custom(Rate(1, Period.MINUTE)))
        status, _, _ = self.endpoint(limited, None, None)
        self.assertEqual(status, 200)
        self.assert_same(limited, VerifyCode.RATE_LIMITED)


if __name__ == "__main__":
    unittest.main()
