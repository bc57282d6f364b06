"""Start `metaprior serve` as a child process on a loopback port: for tests, benchmarks and
notebooks that need a real server (a real process, real HTTP, a real database).

Example:
    >>> with ServerProcess("sqlite:///studies.db") as server:
    ...     client = Client(server.url, token=server.token)
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from metaprior.service.errors import ServiceUnavailableError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`metaprior serve --store URL` in a child process on 127.0.0.1.

    Args:
        store: the store URL.
        token: the token (default: a random one), handed over in a 0600 token file.
        port: the port (default: a free one).
        jobs: run a training worker beside the server.
        workdir: where the token file and the server's log go (default: a new temp folder).
    """

    def __init__(self, store: str, token: str | None = None, port: int | None = None,
                 jobs: bool = True, workdir: str | os.PathLike | None = None, workers: int = 1):
        self.store, self.jobs, self.workers = store, jobs, workers
        self.token = token or secrets.token_urlsafe(24)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="metaprior-serve-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token_file = self.workdir / f"token-{self.port}"
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left there before keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(self.token)
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start the server and wait until it answers `/v1/health`."""
        cmd = [sys.executable, "-m", "metaprior", "serve", "--store", self.store,
               "--port", str(self.port), "--token-file", str(self.token_file),
               "--workers", str(self.workers)]
        if not self.jobs:
            cmd.append("--no-jobs")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceUnavailableError(f"metaprior serve exited with status "
                                              f"{self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceUnavailableError(f"metaprior serve did not answer within {timeout} s: "
                                      f"{self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server (and its worker): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM), killing it after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
