"""Test support: start the real ``keywardd`` on a temporary data directory and sockets, raw protocol
frames for abuse the clients never send, and a scripted fake daemon for what a real one never does.

The daemon binary is ``$KEYWARD_DAEMON_BIN``, else ``keywardd`` in ``$KEYWARD_BIN_DIR``, else in
``$CARGO_TARGET_DIR`` or the repository's ``target/``, debug build first. Without one the daemon tests are
skipped with a message, unless ``KEYWARD_TEST_STRICT=1`` (as in CI), where a test that cannot run fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Callable, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from keyward import Client  # noqa: E402
from keyward.messages import HELLO_FRAME  # noqa: E402

#: How long a daemon may take to start or stop before a test gives up (a hang, not a timing claim).
PATIENCE = 30.0

#: A cheap Argon2 cost, so that creating and first verifying keys takes milliseconds.
TEST_CONFIG = """
[argon2]
memory_kib = 64
iterations = 1
workers = 1
"""


def strict() -> bool:
    return os.environ.get("KEYWARD_TEST_STRICT") == "1"


def daemon_binary() -> Optional[str]:
    """The ``keywardd`` to test, or ``None``."""
    explicit = os.environ.get("KEYWARD_DAEMON_BIN")
    if explicit:
        return explicit
    dirs: List[Path] = []
    if os.environ.get("KEYWARD_BIN_DIR"):
        dirs.append(Path(os.environ["KEYWARD_BIN_DIR"]))
    for target in (os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")):
        if target:
            dirs += [Path(target) / "debug", Path(target) / "release"]
    for directory in dirs:
        candidate = directory / "keywardd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_daemon() -> str:
    """The binary, or a skip (a failure under ``KEYWARD_TEST_STRICT=1``)."""
    binary = daemon_binary()
    if binary is None or not os.path.exists(binary):
        message = (
            "no keywardd binary: build it (cargo build -p keyward-daemon) or set KEYWARD_DAEMON_BIN"
            if binary is None
            else f"KEYWARD_DAEMON_BIN={binary} does not exist"
        )
        if strict():
            raise AssertionError(f"KEYWARD_TEST_STRICT=1 and {message}")
        print(f"\n*** skipped: {message} ***", file=sys.stderr)
        raise unittest.SkipTest(message)
    return binary


def require_root(why: str) -> None:
    """Skips unless root (a failure under ``KEYWARD_TEST_STRICT=1``, where CI runs as root)."""
    if os.geteuid() == 0:
        return
    if strict():
        raise AssertionError(f"KEYWARD_TEST_STRICT=1 and not root: cannot {why}")
    raise unittest.SkipTest(f"not root, so cannot {why}")


class Daemon:
    """A running ``keywardd`` on its own temporary directory, answering on both sockets."""

    def __init__(self, extra_config: str = "", args: Optional[List[str]] = None) -> None:
        self.binary = require_daemon()
        self.dir = tempfile.mkdtemp(prefix="kwpy-")
        os.chmod(self.dir, 0o700)
        self.config = os.path.join(self.dir, "keyward.toml")
        with open(self.config, "w") as file:
            file.write(TEST_CONFIG + extra_config)
        self.data_dir = os.path.join(self.dir, "data")
        self.verify_socket = os.path.join(self.dir, "run", "verify.sock")
        self.admin_socket = os.path.join(self.dir, "run", "admin.sock")
        self.log_path = os.path.join(self.dir, "keywardd.log")
        self.args = args or []
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("KEYWARD_")}
        env["KEYWARD_LOG"] = env.get("KEYWARD_PY_TEST_LOG", "warn")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--config", self.config, "--data-dir", self.data_dir, "--socket", self.verify_socket,
                 "--admin-socket", self.admin_socket, *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
            )
        started = time.monotonic()
        while not (_answers(self.verify_socket) and _answers(self.admin_socket)):
            status = self.process.poll()
            if status is not None:
                raise AssertionError(f"keywardd exited during startup ({status}); log:\n{self.log()}")
            if time.monotonic() - started > PATIENCE:
                raise AssertionError(f"keywardd did not start; log:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as file:
                return file.read()
        except OSError:
            return ""

    def admin(self, **kwargs: object) -> Client:
        return Client(self.admin_socket, **kwargs)  # type: ignore[arg-type]

    def verifier(self, **kwargs: object) -> Client:
        return Client(self.verify_socket, **kwargs)  # type: ignore[arg-type]

    def signal_and_wait(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        status = self.process.wait(PATIENCE)
        self.process = None
        return status

    def kill(self) -> None:
        if self.process is not None:
            self.signal_and_wait(signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(PATIENCE)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(path: str) -> bool:
    try:
        with Client(path, timeout=1.0) as client:
            client.ping()
        return True
    except Exception:
        return False


# --- Raw frames -----------------------------------------------------------------------------------


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def read_frame(sock: socket.socket) -> Optional[bytes]:
    """One frame's payload, or ``None`` at a clean end of stream."""
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    payload = _read_exactly(sock, struct.unpack(">I", header)[0])
    if payload is None:
        raise AssertionError("the stream ended in the middle of a frame")
    return payload


def _read_exactly(sock: socket.socket, n: int) -> Optional[bytes]:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            if data:
                raise AssertionError("the stream ended in the middle of a frame")
            return None
        data += chunk
    return data


def raw_connection(path: str, handshake: bool = True) -> socket.socket:
    """A connected socket, with the handshake done unless told otherwise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(PATIENCE)
    sock.connect(path)
    if handshake:
        sock.sendall(HELLO_FRAME)
        assert read_frame(sock) == b"\x00\x02", "the daemon accepted the handshake"
    return sock


# --- A fake daemon --------------------------------------------------------------------------------


class FakeDaemon:
    """A Unix socket served by ``handler(connection)`` in a thread per connection: a daemon that does what
    a real one never does (answers out of order, garbles a reply, never answers)."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.dir = tempfile.mkdtemp(prefix="kwpy-fake-")
        self.path = os.path.join(self.dir, "fake.sock")
        self.handler = handler
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        self.open: List[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except (OSError, AssertionError):
            pass

    def close(self) -> None:
        self.server.close()
        for conn in self.open:
            try:
                conn.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def accept_hello(conn: socket.socket) -> None:
    """Reads the client's hello and accepts it."""
    assert read_frame(conn) == b"\x02"
    conn.sendall(framed(b"\x00\x02"))
