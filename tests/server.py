"""A real ``flowsight serve`` process for end-to-end tests (uvicorn, chDB, its own data dir)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """Starts, stops and kills one service process on loopback."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = {**os.environ, "FLOWSIGHT_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "flowsight.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def query_stopped_store(data_dir: Path, sql: str) -> list[Any]:
    """Run one query against a stopped server's chDB directory, in a separate process
    (one process holds one chDB directory at a time)."""
    code = (
        "import sys, json, clickhouse_connect\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{(data_dir / 'clickhouse').resolve()}')\n"
        "print(json.dumps([list(r) for r in c.query(sys.stdin.read()).result_rows], default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=sql, capture_output=True, text=True, check=True, timeout=120
    )
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
