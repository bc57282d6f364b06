"""`metaprior demo` (metaprior/demo.py) runs from the installed package alone, and the package
never imports the repository's benchmarks/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

import metaprior
from metaprior.tasks import Branin

PACKAGE = Path(metaprior.__file__).parent


def test_the_package_never_imports_benchmarks():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not found


def test_quick_demo_runs_outside_the_repository(tmp_path):
    # From a folder outside the clone, with no PYTHONPATH, benchmarks/ cannot be imported: what
    # a user of the installed package sees. One worker: the pool of `make demo`'s two would
    # double the test's time with the imports of two more interpreters.
    script = ("import importlib.util, sys\n"
              "assert importlib.util.find_spec('benchmarks') is None\n"
              "from metaprior.cli import main\n"
              "sys.exit(main(['demo', '--quick', '--tasks', '1', '--budget', '3', '--workers', '1',"
              " '--out', 'out']))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    for heading in ("Few-shot MSE", "BO on 1 held-out tasks", "tasks unlike Branin",
                    "prior_trust of the default model after 2 evaluations", "plot: out"):
        assert heading in proc.stdout, proc.stdout
    runs = pd.read_csv(tmp_path / "out" / "demo_runs.csv")
    # help and harm, 1 task each, 3 methods, 3 evaluations each
    assert len(runs) == 18 and set(runs.method) == {"bo", "metaprior", "metaprior-mean"}
    assert runs.task.str.contains("-harm-other-").sum() == 9
    for _, run in runs.groupby(["task", "method"]):
        assert run.regret.is_monotonic_decreasing  # of the best value so far
    task = Branin().held_out_tasks(1, seed=0)[0]
    help_runs = runs[runs.task == task.name]
    assert len(help_runs) == 9
    expected = (help_runs.best - task.y_min) / (task.y_max - task.y_min)
    assert (help_runs.regret - expected).abs().max() < 1e-12
    assert (runs[runs.method == "bo"].prior_trust == 0).all()
    assert (tmp_path / "out" / "demo_regret.png").stat().st_size > 0
    assert (tmp_path / "out" / "branin-quick.prior").is_file()
