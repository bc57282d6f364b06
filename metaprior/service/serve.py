"""`metaprior serve`: the token rules, the job worker beside the server, and uvicorn.

The token: `--token-file F` reads it from F (which must be readable by its owner only);
without it, `$METAPRIOR_TOKEN`; with neither, the token file of the store directory
(`<store>/service.token`), created with a random token and mode 0600 if absent. The command
says where the token came from, never the token itself.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import threading
from pathlib import Path

from metaprior.errors import ConfigError
from metaprior.service.app import STORE_ENV, TOKEN_ENV
from metaprior.service.db import Store, normalize_url
from metaprior.store import default_store

TOKEN_FILE = "service.token"


def store_url(arg: str | None) -> str:
    """The store URL of `--store`: a URL as given, a bare path as an SQLite file; None: the
    SQLite file of the store directory."""
    if arg is None:
        return normalize_url(f"sqlite:///{default_store() / 'service.db'}")
    if "://" not in arg:
        return normalize_url(f"sqlite:///{Path(arg).expanduser().resolve()}")
    return normalize_url(arg)


def read_token_file(path: Path) -> str:
    """The token in `path`; `ConfigError` if it is missing, empty or readable by others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"--token-file {str(path)!r}: cannot read it ({e.strerror or e})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--token-file {str(path)!r} is open to other users (mode "
                          f"{stat.S_IMODE(mode):04o}); chmod 600 it")
    if not text:
        raise ConfigError(f"--token-file {str(path)!r} is empty")
    return text


def create_token_file(path: Path) -> str:
    """A new random token in a new file at `path`, readable by its owner only; an existing
    file there is read instead (a restarted server keeps its token).

    Not `priorfile.atomic_write_bytes`: that leaves the mode to the umask, and a token file
    must be 0600 from the moment it exists.
    """
    if path.exists():
        return read_token_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have cleared bits, never added any; be explicit
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        # A link, not a replace: two servers starting at once on one store must end with one
        # token, the first one written, rather than each keeping the token it wrote.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the last writer wins, as before
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return read_token_file(path)


def resolve_token(token_file: str | None) -> tuple[str, str]:
    """`(token, where it came from)` by the rules in the module's docstring."""
    if token_file is not None:
        path = Path(token_file).expanduser()
        return read_token_file(path), f"token from {path}"
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], f"token from ${TOKEN_ENV}"
    path = default_store() / TOKEN_FILE
    existed = path.exists()
    token = create_token_file(path)
    return token, (f"token in {path}" if existed else f"new token written to {path} (mode 0600)")


def serve(store: str | None, host: str, port: int, workers: int, token_file: str | None,
          jobs: bool = True, log_level: str = "warning") -> int:
    """Run the service until interrupted; returns the exit status."""
    import uvicorn

    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535 (got {port})")
    url = store_url(store)
    Store(url).close()  # create or migrate the schema once, and fail here on a bad store
    token, where = resolve_token(token_file)
    os.environ[STORE_ENV], os.environ[TOKEN_ENV] = url, token
    keeper = JobWorkerKeeper(url) if jobs else None
    print(f"metaprior serve: http://{host}:{port} store {redact(url)}; {where}", flush=True)
    try:
        uvicorn.run("metaprior.service.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level)
    finally:
        if keeper is not None:
            keeper.stop()
    return 0


class JobWorkerKeeper:
    """The training worker process beside the server, restarted if it dies: queued jobs would
    otherwise wait for ever while the server looks healthy."""

    RESTART_DELAY = 5.0

    def __init__(self, url: str):
        self.cmd = [sys.executable, "-m", "metaprior.service.jobs", "--store", url,
                    "--parent", str(os.getpid())]
        self._stopping = threading.Event()
        self.proc = subprocess.Popen(self.cmd)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            status = self.proc.wait()
            if self._stopping.wait(self.RESTART_DELAY):
                return
            print(f"metaprior serve: the job worker exited with status {status}; restarting it",
                  file=sys.stderr, flush=True)
            self.proc = subprocess.Popen(self.cmd)

    def stop(self) -> None:
        self._stopping.set()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def redact(url: str) -> str:
    """`url` without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
