"""Atomic saves: permissions from the umask, leftovers of killed writers removed, durable renames."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metaprior.errors import ConfigError
from metaprior.priorfile import (
    STALE_TMP_SECONDS,
    atomic_write_bytes,
    check_writable_file,
)


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_follow_the_umask(tmp_path, tiny_prior, umask):
    """A store shared by a team must be readable by it: no hard-coded 0600."""
    old = os.umask(umask)
    try:
        tiny_prior.save(tmp_path / "p.prior")
        atomic_write_bytes(tmp_path / "x.ckpt", b"data")
    finally:
        os.umask(old)
    for name in ("p.prior", "x.ckpt"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


def test_leftovers_of_killed_writers_are_removed_by_the_next_save(tmp_path, tiny_prior):
    path = tmp_path / "X.prior"
    gone = dead_pid()
    stale = [tmp_path / f".X.prior.{gone}.{i:08x}.tmp" for i in range(7)]
    old_style = tmp_path / ".X.prior.k2j4h5g3.tmp"  # tempfile.mkstemp's naming, before pids
    live = tmp_path / f".X.prior.{os.getppid()}.0badf00d.tmp"  # a writer still running
    other = tmp_path / f".Y.prior.{gone}.00000000.tmp"  # another file's writer: not ours
    for p in [*stale, old_style, live, other]:
        p.write_bytes(b"partial")
    long_ago = time.time() - 2 * STALE_TMP_SECONDS
    os.utime(old_style, (long_ago, long_ago))
    tiny_prior.save(path)
    assert not any(p.exists() for p in stale) and not old_style.exists()
    assert live.exists() and other.exists()
    assert path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["X.prior", live.name, other.name])


def test_a_fresh_old_style_tmp_file_is_kept(tmp_path):
    """Without a pid in its name only age tells it is stale; a concurrent writer's is young."""
    path = tmp_path / "X.prior"
    young = tmp_path / ".X.prior.abcdefgh.tmp"
    young.write_bytes(b"partial")
    atomic_write_bytes(path, b"new")
    assert young.exists() and path.read_bytes() == b"new"


def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Without it the rename can be lost on power loss, leaving the old file or none."""
    real_fsync, real_replace = os.fsync, os.replace
    events = []

    def recording_fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        return real_fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    atomic_write_bytes(tmp_path / "p.prior", b"data")
    assert events == [("fsync", False), ("replace", "p.prior"), ("fsync", True)]


def test_a_failed_write_leaves_no_tmp_file(tmp_path):
    target = tmp_path / "p.prior"
    target.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["p.prior"]


def test_check_writable_file(tmp_path):
    assert check_writable_file(tmp_path / "new" / "deeper" / "p.prior") == \
        tmp_path / "new" / "deeper" / "p.prior"
    assert list((tmp_path / "new" / "deeper").iterdir()) == []  # the probe is gone
    with pytest.raises(ConfigError, match="is a directory"):
        check_writable_file(tmp_path, "--out")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="afile.*is a file"):
        check_writable_file(tmp_path / "afile" / "x.prior", "--out")
