"""No user error makes the command print a traceback: one line on stderr, the documented status.

Each case is a real `python -m metaprior ...` process. They start all at once (each spends
seconds importing torch), and the tests below check one case each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from metaprior.meta.checkpoint import CheckpointLock
from metaprior.priorfile import CHECKSUM_SCHEME, FORMAT_NAME, full_checksum

TINY = ["--steps", "20", "--tasks-per-step", "4", "--points-per-task", "10", "--inner-steps", "2",
        "--adapt-steps", "4", "--no-progress", "--hidden", "4"]

# The cases of the issue, each a process: name -> (arguments, exit status, words the one
# stderr line must hold).
CASES = {
    "device-nonsense": (["train", "branin", "--out", "a.prior", "--device", "nonsense", *TINY],
                        2, ["'nonsense'"]),
    "device-cuda-abc": (["train", "branin", "--out", "a.prior", "--device", "cuda:abc", *TINY],
                        2, ["'cuda:abc'"]),
    "hidden-too-large": (["train", "branin", "--out", "a.prior", *TINY, "--hidden",
                          "100000,100000"], 2, ["hidden=(100000, 100000)", "GiB"]),
    "max-steps-negative": (["train", "branin", "--out", "a.prior", *TINY, "--max-steps", "-1"],
                           2, ["--max-steps", "-1"]),
    "steps-not-a-number": (["train", "branin", "--out", "a.prior", "--steps", "abc"],
                           2, ["--steps", "'abc'"]),
    "info-nested-json": (["info", "store/deep.prior"], 2, ["deep.prior", "corrupt"]),
    "list-store-is-a-file": (["list", "--store", "afile"], 2, ["afile", "not a directory"]),
    "out-is-a-directory": (["train", "branin", "--out", "adir", *TINY], 2,
                           ["adir", "is a directory"]),
    "out-under-a-file": (["train", "branin", "--out", "afile/x.prior", *TINY], 2,
                         ["afile", "is a file"]),
    "resume-without-checkpoint": (["train", "branin", "--out", "r.prior", *TINY, "--resume"], 2,
                                  ["--resume", "r.prior.ckpt"]),
    "resume-other-steps": (["train", "branin", "--out", "s.prior", *TINY, "--steps", "200",
                            "--resume"], 2, ["outer_steps=20 where this run has 200"]),
    "checkpoint-in-use": (["train", "branin", "--out", "busy.prior", *TINY], 2,
                          ["another run", f"pid {os.getpid()}"]),
}


def env() -> dict:
    full = {**os.environ, "OMP_NUM_THREADS": "1"}
    full.pop("METAPRIOR_DEBUG", None)
    return full


def write_deep_prior(path: Path, prior) -> None:
    """A prior file whose header (checksum and all) nests a list 100,000 levels deep."""
    tensors = {f"param.{i:03d}": p.float() for i, p in enumerate(prior.params)}
    header = json.dumps(prior.header())
    meta = {"format": FORMAT_NAME, "format_version": "1", "checksum_scheme": CHECKSUM_SCHEME,
            "header": header[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"}
    meta["checksum"] = full_checksum(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))


def write_nan_prior(path: Path, prior) -> None:
    from metaprior.priorfile import write_prior_file

    tensors = {f"param.{i:03d}": p.float().clone() for i, p in enumerate(prior.params)}
    tensors["param.000"][0, 0] = float("nan")
    write_prior_file(path, tensors, prior.header())


def write_checkpoint(tmp: Path, out: str) -> None:
    """A 2-step checkpoint of the command's own 20-step run (the same config and seed)."""
    from metaprior.cli import build_config, build_parser
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Branin

    cfg = build_config(build_parser().parse_args(["train", "branin", "--out", out, *TINY]))
    meta_train(Branin(), cfg, seed=0, progress=False, checkpoint=tmp / f"{out}.ckpt",
               max_steps=2, shift_prior=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_prior) -> dict:
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "store").mkdir()
    write_deep_prior(tmp / "store" / "deep.prior", tiny_prior)
    tiny_prior.save(tmp / "store" / "good.prior")
    (tmp / "store" / "dangling.prior").symlink_to(tmp / "nowhere.prior")
    (tmp / "afile").write_text("not a folder")
    (tmp / "adir").mkdir()
    write_checkpoint(tmp, "s.prior")
    cases = {**CASES, "list-with-bad-files": (["list", "--store", "store"], 0, [])}
    with CheckpointLock(tmp / "busy.prior.ckpt"):  # another run trains into busy.prior
        procs = {name: subprocess.Popen([sys.executable, "-m", "metaprior", *args], cwd=tmp,
                                        env=env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (args, _, _) in cases.items()}
        out = {name: (*p.communicate(timeout=300), p.returncode) for name, p in procs.items()}
    out["tmp"] = tmp
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_error_is_one_line_with_its_exit_status(results, name):
    _, code, needles = CASES[name]
    stdout, stderr, returncode = results[name]
    lines = stderr.strip().splitlines()
    assert returncode == code, (returncode, stderr)
    assert len(lines) == 1, stderr  # one line: no traceback, no usage block
    assert lines[0].startswith("metaprior: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_nothing_was_written_by_the_failed_trainings(results):
    tmp = results["tmp"]
    assert not (tmp / "a.prior").exists() and not (tmp / "a.prior.ckpt").exists()
    assert not (tmp / "r.prior").exists() and not (tmp / "busy.prior").exists()
    assert list((tmp / "adir").iterdir()) == []
    assert torch.load(tmp / "s.prior.ckpt", weights_only=True)["step"] == 2  # left alone


def test_list_shows_every_prior_despite_broken_files(results):
    stdout, stderr, returncode = results["list-with-bad-files"]
    assert returncode == 0, stderr
    rows = {line.split()[0]: line for line in stdout.splitlines()[2:]}
    assert set(rows) == {"dangling", "deep", "good"}, stdout
    assert "logistic" in rows["good"]
    assert "unreadable" in rows["dangling"] and "unreadable" in rows["deep"]


def test_ctrl_c_during_imports_exits_130_without_traceback(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "metaprior", "train", "branin", "--out",
                             "x.prior", *TINY], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.5)  # Python is up and importing torch (about 2 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines() == ["metaprior: interrupted"], err


DEFERRED_IMPORT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from metaprior import cli
cli.COMPILED_LIBRARIES = ("signals_itself",)
try:
    cli.import_compiled_libraries()
except KeyboardInterrupt:
    print("interrupted; import finished:", sys.modules["signals_itself"].FINISHED)
"""


def test_ctrl_c_is_held_back_until_the_compiled_libraries_are_loaded(tmp_path):
    # A module that is interrupted in the middle of its import: without the hold, the
    # KeyboardInterrupt is raised inside it (where a pybind11 extension can abort the process)
    # and the module never finishes loading.
    (tmp_path / "signals_itself.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n"
        "for _ in range(100000):\n    pass\nFINISHED = True\n")
    out = subprocess.run([sys.executable, "-c", DEFERRED_IMPORT, str(tmp_path)], env=env(),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "interrupted; import finished: True", (out.stdout, out.stderr)


# Further user errors, through `main` in this process (a process each would cost seconds).
IN_PROCESS = {
    "unknown-option": (["info", "x.prior", "--bogus"], 2, ["--bogus"]),
    "outer-lr-inf": (["train", "branin", "--out", "a.prior", *TINY, "--outer-lr", "inf"],
                     2, ["outer_lr", "inf"]),
    "diverges": (["train", "branin", "--out", "a.prior", *TINY, "--outer-lr", "1e30",
                  "--outer-optimizer", "sgd"], 2, ["diverged", "outer_lr=1e+30"]),
    "eval-nan-weights": (["eval", "nan.prior"], 2, ["nan.prior", "NaN or inf"]),
    "missing-family": (["train", "--out", "a.prior"], 2, ["FAMILY"]),
}


@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_user_error_in_process(name, tmp_path, monkeypatch, capsys, tiny_prior):
    from metaprior.cli import main

    monkeypatch.delenv("METAPRIOR_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    write_nan_prior(tmp_path / "nan.prior", tiny_prior)
    args, code, needles = IN_PROCESS[name]
    try:
        returncode = main(args)
    except SystemExit as e:  # argparse exits
        returncode = e.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert returncode == code and len(lines) == 1, (returncode, lines)
    assert lines[0].startswith("metaprior: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "a.prior").exists() and not (tmp_path / "a.prior.ckpt").exists()


def test_out_of_memory_during_training_is_one_line_with_status_1(tmp_path, monkeypatch, capsys):
    """An allocation that fails despite the up-front estimate (another process took the memory)."""
    import metaprior.meta.reptile as reptile
    from metaprior.cli import main

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 80000000000 bytes.")

    monkeypatch.delenv("METAPRIOR_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reptile, "init_params", no_memory)
    assert main(["train", "branin", "--out", "a.prior", *TINY]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaprior: error: out of memory"), lines
