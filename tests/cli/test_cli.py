"""The `metaprior` command, run as a real subprocess (`python -m metaprior ...`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--steps", "20", "--tasks-per-step", "4", "--points-per-task", "10", "--inner-steps", "2",
        "--adapt-steps", "4", "--no-progress"]


def run(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("METAPRIOR_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "metaprior", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *needles: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("metaprior: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Train a tiny Branin prior through the command (into --out and a named store entry)."""
    tmp = tmp_path_factory.mktemp("cli")
    proc = run("train", "branin", "--out", "b.prior", "--name", "branin-tiny", "--store", "store",
               "--seed", "3", "--hidden", "16,16", *TINY, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert "saved branin prior (20/20 outer steps" in proc.stdout
    assert (tmp / "b.prior").is_file() and (tmp / "store" / "branin-tiny.prior").is_file()
    assert not (tmp / "b.prior.ckpt").exists()  # a finished run leaves no checkpoint behind
    return tmp


def test_train_writes_a_loadable_prior_with_the_requested_config(trained):
    from metaprior import MetaPrior

    prior = MetaPrior.load(trained / "b.prior")
    assert prior.family == "branin" and prior.dim == 2
    assert prior.config.hidden == (16, 16) and prior.config.outer_steps == 20
    assert prior.config.tasks_per_step == 4 and prior.config.adapt_steps == 4
    assert prior.stats["seed"] == 3 and prior.stats["outer_steps_done"] == 20


def test_info_human_and_json(trained):
    proc = run("info", "b.prior", cwd=trained)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "branin" in text and "x0 in [-5, 10]; x1 in [0, 15]" in text
    assert "metaprior version 2" in text and "outer_steps_done=20" in text
    # train estimates the shift prior
    assert "\nshift " in text and "(64 tasks; the default's shift ensemble, mode 'shift')" in text
    proc = run("info", "b.prior", "--json", cwd=trained)
    header = json.loads(proc.stdout)
    assert set(header["shift_prior"]) >= {"mean", "cov", "resid_sd"}
    assert header["family"] == "branin" and header["dim"] == 2
    assert header["bounds"] == [[-5.0, 0.0], [10.0, 15.0]]
    assert header["config"]["hidden"] == [16, 16] and header["format_version"] == 2


def test_eval_prints_the_few_shot_table(trained):
    proc = run("eval", "b.prior", "--tasks", "3", "--shots", "1,4", "--json", cwd=trained)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {(r["shots"], r["method"]) for r in rows} == {
        (k, m) for k in (1, 4) for m in ("meta_adapted", "random_adapted", "meta_unadapted")}
    assert all(r["n_tasks"] == 3 and r["mse"] > 0 for r in rows)


def test_list_shows_the_named_prior(trained):
    proc = run("list", "--store", "store", cwd=trained)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("branin-tiny"))
    assert line.split()[:4] == ["branin-tiny", "branin", "2", "20"]
    # the store also comes from $METAPRIOR_STORE, and `info` finds a prior there by name
    proc = run("info", "branin-tiny", cwd=trained,
               env={"METAPRIOR_STORE": str(trained / "store")})
    assert proc.returncode == 0 and "branin" in proc.stdout, proc.stderr


def test_help_on_every_subcommand(tmp_path):
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for sub in ("train", "info", "eval", "list", "bench", "demo"):
        assert sub in proc.stdout
    # every subcommand in one interpreter (each start costs seconds of imports)
    script = (
        "import contextlib, io, sys\n"
        "from metaprior.cli import main\n"
        "for sub in ('train', 'info', 'eval', 'list', 'bench', 'demo'):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            code = main([sub, '--help'])\n"
        "        except SystemExit as e:\n"
        "            code = e.code\n"
        "    assert code in (0, None), (sub, code)\n"
        "    assert 'usage:' in out.getvalue(), (sub, out.getvalue())\n"
        "    if sub == 'train':\n"
        "        assert '--tasks-per-step' in out.getvalue() and '--resume' in out.getvalue()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_bench_without_the_repository_says_so_in_one_line(tmp_path):
    # An installed package has no benchmarks/ above it: point the command's idea of the
    # repository at an empty folder and run from it, where `benchmarks` cannot be imported.
    script = ("import sys\n"
              "from pathlib import Path\n"
              "from metaprior import cli\n"
              "cli.REPOSITORY = Path.cwd()\n"
              "assert cli.main(['bench', '--help']) == 0\n"
              "sys.exit(cli.main(['bench', '--families', 'branin']))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "METAPRIOR_DEBUG")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.stdout.startswith("usage: metaprior bench"), proc.stdout
    assert_one_line_error(proc, "benchmarks/run.py not found", "clone of the metaprior repository")


def test_corrupt_prior_is_one_line_error(trained, tmp_path):
    data = (trained / "b.prior").read_bytes()
    (tmp_path / "bad.prior").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run("info", "bad.prior", cwd=tmp_path), "bad.prior")


def test_missing_file_unknown_family_bad_config(tmp_path):
    assert_one_line_error(run("eval", "nope.prior", cwd=tmp_path), "nope.prior",
                          "no such prior file")
    assert_one_line_error(run("train", "bananas", "--out", "x.prior", cwd=tmp_path),
                          "'bananas'", "branin")
    assert_one_line_error(run("train", "branin", "--out", "x.prior", "--inner-lr", "-1",
                              cwd=tmp_path), "inner_lr", "-1")
    assert not (tmp_path / "x.prior").exists()


def test_ctrl_c_checkpoints_and_resume_continues(tmp_path):
    args = ["train", "branin", "--out", "c.prior", "--steps", "100000", "--tasks-per-step", "2",
            "--points-per-task", "8", "--inner-steps", "1", "--checkpoint-every", "2",
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A shell that starts a job in the background makes it ignore SIGINT, and Python then never
    # turns SIGINT into KeyboardInterrupt; give the child the default disposition back.
    proc = subprocess.Popen([sys.executable, "-m", "metaprior", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = tmp_path / "c.prior.ckpt"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].endswith("continue with the same command plus --resume")
    assert not (tmp_path / "c.prior").exists()
    done = run(*args, "--resume", "--max-steps", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stopped early at step" in done.stdout and ckpt.exists()
    from metaprior import MetaPrior

    steps = MetaPrior.load(tmp_path / "c.prior").stats["outer_steps_done"]
    assert steps >= 4  # at least one checkpoint (2 steps) plus the 2 resumed steps


def test_the_command_reference_names_every_registered_family():
    from metaprior.tasks import family_names

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    missing = [name for name in family_names() if f"`{name}`" not in text]
    assert not missing, f"docs/cli.md does not name {missing}"
