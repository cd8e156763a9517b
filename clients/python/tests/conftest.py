"""Fixtures: the real engram-server, started on a free loopback port.

The binary comes from ENGRAM_SERVER_BINARY (ctest sets it) or the default
build directory. Each server gets its own --data_dir and ready file; the
fixture waits for the ready file and for the health service to answer
SERVING, and kills the server afterwards.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import pytest

from engram_similarity import Client, TlsConfig

REPO = Path(__file__).resolve().parents[3]
DEFAULT_BINARY = REPO / "build" / "server" / "engram-server"


def server_binary() -> Path:
    path = Path(os.environ.get("ENGRAM_SERVER_BINARY", DEFAULT_BINARY))
    if not path.is_file():
        pytest.fail(f"no engram-server at {path}: build it or set ENGRAM_SERVER_BINARY")
    return path


class Server:
    """One engram-server process; `target` is where it listens."""

    def __init__(self, flags: Sequence[str] = (), tls: Optional[TlsConfig] = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="engram-py-")
        base = Path(self.dir.name)
        ready = base / "ready"
        self.log_path = base / "server.log"
        args = [
            str(server_binary()),
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--ready_file={ready}",
            f"--data_dir={base / 'data'}",
            "--worker_threads=2",
            "--min_version_wait=100ms",
            *flags,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        port = None
        while port is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"engram-server exited: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"engram-server not ready in 30 s: {self.log()}")
            if ready.exists():
                import json

                try:
                    port = json.loads(ready.read_text())["grpc_port"]
                except (ValueError, KeyError):
                    pass
            if port is None:
                time.sleep(0.02)
        self.target = f"127.0.0.1:{port}"
        with Client(self.target, tls=tls or False, timeout=5) as client:
            while client.health() != "SERVING":
                if time.monotonic() > deadline:
                    raise RuntimeError("engram-server never answered SERVING")
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        # SIGKILL: a drain (SIGTERM) takes seconds and these tests do not
        # need one; the data directory goes with the temporary directory.
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture()
def client(server: Server) -> Iterator[Client]:
    with Client(server.target, timeout=30) as c:
        yield c


_names = iter(range(1_000_000))


@pytest.fixture()
def name(request: pytest.FixtureRequest) -> str:
    """A collection or graph name unique within the test run."""
    return f"{request.node.name[:40].strip('_')}-{next(_names)}".replace("[", "-").replace("]", "")
