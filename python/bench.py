#!/usr/bin/env python3
"""Warm verify latency of the Python client against a bare Python Unix-socket round trip, in one run.

Starts its own ``keywardd`` (release build preferred: ``$KEYWARD_DAEMON_BIN``, else ``keywardd`` in
``$CARGO_TARGET_DIR`` or ``target/``, ``release`` before ``debug``) on a temporary directory, creates one
key without a rate limit, warms it, then measures, interleaved in rounds so that a noisy machine hurts
every row alike:

- ``bare ping``: the floor. A pre-encoded ``Ping`` frame written with ``socket.sendall`` and its reply read
  with ``socket.recv`` on a raw socket: the cost of a Python Unix-socket round trip with the daemon's
  cheapest answer, and nothing of this package.
- ``bare verify``: the same with a pre-encoded ``Verify`` frame, its reply read but not decoded: the floor
  plus the daemon's warm verify.
- ``Client.ping`` and ``Client.verify``: the synchronous client, one connection, sequential calls
  (encoding, the idle-connection check, decoding the answer and its key).
- ``AsyncClient.verify``: the asyncio client, one call awaited at a time.

Then throughput with many verifies in flight on one connection (``Client.verify_many`` and
``asyncio.gather`` of ``AsyncClient.verify``). The ratio column is each p50 over the bare ping's p50.

    python3 python/bench.py [--iterations 20000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from keyward import Client, CreateRequest, Limits, RatePolicy  # noqa: E402
from keyward.aio import AsyncClient  # noqa: E402
from keyward.messages import HELLO_FRAME, Ping, encode_request, encode_verify  # noqa: E402


def daemon_binary() -> str:
    explicit = os.environ.get("KEYWARD_DAEMON_BIN")
    if explicit:
        return explicit
    targets = [t for t in (os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")) if t]
    for profile in ("release", "debug"):
        for target in targets:
            candidate = Path(target) / profile / "keywardd"
            if candidate.is_file():
                return str(candidate)
    sys.exit("no keywardd: cargo build --release -p keyward-daemon (or set KEYWARD_DAEMON_BIN)")


class Daemon:
    def __init__(self, binary: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="kwpy-bench-")
        os.chmod(self.dir, 0o700)
        self.verify_socket = os.path.join(self.dir, "run", "verify.sock")
        self.admin_socket = os.path.join(self.dir, "run", "admin.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        env["KEYWARD_LOG"] = "warn"
        self.process = subprocess.Popen(
            [binary, "--data-dir", os.path.join(self.dir, "data"), "--socket", self.verify_socket,
             "--admin-socket", self.admin_socket],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(self.verify_socket, timeout=1) as c, Client(self.admin_socket, timeout=1) as a:
                    c.ping()
                    a.ping()
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit("keywardd did not start")
                time.sleep(0.05)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(HELLO_FRAME)
    assert sock.recv(64) == b"\x00\x00\x00\x02\x00\x02"
    return sock


def round_trip(sock: socket.socket, frame: bytes) -> Callable[[], None]:
    """One pre-encoded request and its whole reply, read into a buffer allocated once, without decoding:
    the least a Python program can do per round trip."""
    send, recv_into = sock.sendall, sock.recv_into
    buffer = bytearray(65536)
    view = memoryview(buffer)

    def once() -> None:
        send(frame)
        got = recv_into(view)
        want = 4 + int.from_bytes(buffer[:4], "big")
        while got < want:
            got += recv_into(view[got:])

    return once


def percentile(samples: List[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20000, help="calls per row (default 20000)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    args = parser.parse_args()

    binary = daemon_binary()
    daemon = Daemon(binary)
    try:
        with Client(daemon.admin_socket) as admin:
            created = admin.create(CreateRequest("bench", "bench key", ["read:tables"],
                                                 limits=Limits(rate=RatePolicy.unlimited())))
        token = created.token
        client = Client(daemon.verify_socket).connect()
        bare_ping = raw_socket(daemon.verify_socket)
        bare_verify = raw_socket(daemon.verify_socket)
        verify_frame = encode_verify(1, token.expose(), "read:tables", "bench", 1, [])
        assert client.verify(token, scope="read:tables", workspace="bench").valid

        loop = asyncio.new_event_loop()
        aclient = AsyncClient(daemon.verify_socket)
        loop.run_until_complete(aclient.connect())
        clock = time.perf_counter_ns

        def timed(call: Callable[[], object]) -> Callable[[int], List[int]]:
            def measure(n: int) -> List[int]:
                out = []
                for _ in range(n):
                    start = clock()
                    call()
                    out.append(clock() - start)
                return out

            return measure

        async def async_verifies(n: int) -> List[int]:
            out = []
            for _ in range(n):
                start = clock()
                await aclient.verify(token, scope="read:tables", workspace="bench")
                out.append(clock() - start)
            return out

        rows: Dict[str, Callable[[int], List[int]]] = {
            "bare ping (raw socket)": timed(round_trip(bare_ping, encode_request(1, Ping()))),
            "bare verify (raw socket)": timed(round_trip(bare_verify, verify_frame)),
            "Client.ping": timed(client.ping),
            "Client.verify": timed(lambda: client.verify(token, scope="read:tables", workspace="bench")),
            # Timed inside one coroutine: the cost of an awaited verify, not of starting the loop.
            "AsyncClient.verify": lambda n: loop.run_until_complete(async_verifies(n)),
        }
        samples: Dict[str, List[int]] = {name: [] for name in rows}
        per_round = max(1, args.iterations // args.rounds)
        for measure in rows.values():  # warm every path: the key's digest, the sockets, the caches
            measure(1000)
        # Rows take turns in short rounds, so that what else the machine does falls on all of them alike.
        for _ in range(args.rounds):
            for name, measure in rows.items():
                samples[name] += measure(per_round)

        floor = percentile(samples["bare ping (raw socket)"], 0.5)
        print(f"keywardd: {binary}")
        print(f"python:   {sys.version.split()[0]}; {per_round * args.rounds} calls per row in {args.rounds} "
              "interleaved rounds, one connection each, sequential\n")
        print(f"{'':28} {'p50 µs':>9} {'p99 µs':>9} {'p50 / bare ping':>16}")
        for name, values in samples.items():
            p50 = percentile(values, 0.5)
            print(f"{name:28} {p50:9.1f} {percentile(values, 0.99):9.1f} {p50 / floor:15.2f}x")

        batch = [token] * 128
        started = time.perf_counter()
        total = 0
        while time.perf_counter() - started < 2.0:
            client.verify_many(batch)
            total += len(batch)
        sync_rate = total / (time.perf_counter() - started)

        async def gathered() -> float:
            begin, count = time.perf_counter(), 0
            while time.perf_counter() - begin < 2.0:
                await asyncio.gather(*(aclient.verify(token) for _ in range(128)))
                count += 128
            return count / (time.perf_counter() - begin)

        async_rate = loop.run_until_complete(gathered())
        print("\npipelined, 128 in flight on one connection:")
        print(f"  Client.verify_many          {sync_rate:10,.0f} verifies/s")
        print(f"  gather(AsyncClient.verify)  {async_rate:10,.0f} verifies/s")
        loop.run_until_complete(aclient.close())
        loop.close()
        client.close()
        bare_ping.close()
        bare_verify.close()
    finally:
        daemon.close()


if __name__ == "__main__":
    main()
