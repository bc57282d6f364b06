"""`metaprior train --table`: a prior from a table of runs over a typed space, and `info` of it.

Through `main` in this process (a subprocess each would cost seconds of imports), and once as a
user types it, one process per step.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from helpers import runs_table

from metaprior.cli import main
from metaprior.optim import Optimizer
from metaprior.prior import MetaPrior
from metaprior.space import Categorical, Float, Int, SearchSpace

TINY = ["--steps", "10", "--tasks-per-step", "4", "--points-per-task", "6", "--inner-steps", "2",
        "--adapt-steps", "4", "--hidden", "8,8", "--no-progress"]
LEVELS = ["adam", "sgd", "3", "True"]  # a CSV gives strings back
SPACE = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 4), Categorical("opt", LEVELS)])


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """runs.csv (10 tasks over SPACE), space.json (ours) and cs.json (ConfigSpace's) in a folder."""
    monkeypatch.delenv("METAPRIOR_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    runs_table(n_tasks=10).assign(opt=lambda d: d.opt.astype(str)).to_csv("runs.csv", index=False)
    Path("space.json").write_text(json.dumps(SPACE.to_dict()))
    return tmp_path


def train(*extra: str) -> int:
    return main(["train", "--table", "runs.csv", "--task", "dataset", "--output", "loss",
                 "--out", "t.prior", *TINY, *extra])


def test_train_table_with_our_space_json_and_info_shows_it(runs, capsys):
    assert train("--space", "space.json") == 0
    prior = MetaPrior.load("t.prior")
    assert prior.space == SPACE and prior.family == "runs" and prior.bounds.shape == (2, 6)
    capsys.readouterr()
    assert main(["info", "t.prior"]) == 0
    out = capsys.readouterr().out
    assert ("parameters  lr: float in [0.0001, 0.1], log; layers: int in [1, 4]; "
            "opt: categorical ['adam', 'sgd', '3', 'True']") in out
    assert "6 encoded columns (3 parameters" in out


def test_a_study_over_the_trained_prior_speaks_raw_values(runs):
    """End to end: runs.csv -> train --table -> load -> Optimizer(prior.space) asks and tells raw values."""
    assert train("--space", "space.json") == 0
    prior = MetaPrior.load("t.prior")
    opt = Optimizer(prior.space, prior=prior, seed=0, num_restarts=2, raw_samples=32)
    for _ in range(2):
        trials = opt.ask()
        assert trials["opt"].iloc[0] in LEVELS and 1 <= trials["layers"].iloc[0] <= 4
        opt.tell(trials, [float(abs(math.log10(trials["lr"].iloc[0]) + 2.5))])
    assert opt.history["source"].tolist() == ["prior", "bo"] and set(opt.best[0]) == set(SPACE.names)


def test_train_table_with_a_configspace_json(runs):
    cs = pytest.importorskip("ConfigSpace")
    space = cs.ConfigurationSpace({"lr": cs.Float("lr", (1e-4, 1e-1), log=True),
                                   "layers": cs.Integer("layers", (1, 4)),
                                   "opt": cs.Categorical("opt", LEVELS)})
    space.to_json("cs.json")
    assert train("--space", "cs.json") == 0
    prior = MetaPrior.load("t.prior")
    assert {n: prior.space[n] for n in prior.space.names} == {n: SPACE[n] for n in SPACE.names}


def test_train_table_without_space_infers_one_and_says_so(runs, capsys):
    assert train() == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metaprior: note: no --space given"), err
    assert "2 linear float(s) with bounds from the data (lr, layers)" in err[0]
    df = runs_table(n_tasks=10)
    expected = SearchSpace([Float("lr", df.lr.min(), df.lr.max()), Float("layers", 1, 4),
                            Categorical("opt", sorted(LEVELS))])
    assert MetaPrior.load("t.prior").space == expected


@pytest.mark.parametrize("args, needles", [
    (["--table", "runs.csv", "--task", "dataset"], ["--table needs --output"]),
    (["branin", "--table", "runs.csv", "--task", "dataset", "--output", "loss"], ["not both"]),
    (["--table", "runs.csv", "--task", "dataset", "--output", "nope"], ["no column(s) ['nope']"]),
    (["--table", "none.csv", "--task", "dataset", "--output", "loss"], ["none.csv", "no such file"]),
    (["--table", "space.json", "--task", "dataset", "--output", "loss"], [".csv or .parquet"]),
    (["--table", "runs.csv", "--task", "dataset", "--output", "loss", "--space", "runs.csv"],
     ["--space 'runs.csv' is not JSON"]),
    (["--table", "runs.csv", "--task", "dataset", "--output", "loss", "--space", "narrow.json"],
     ["Float 'lr'", "outside its range [0.01, 0.1]"]),
    (["--table", "runs.csv", "--task", "dataset", "--output", "loss", "--space", "bad.json"],
     ["--space 'bad.json'", "lower must be below upper"]),
    (["branin", "--space", "space.json"], ["--space goes with --table"]),
    (["--table", "runs.parquet", "--task", "dataset", "--output", "loss"], ["'runs.parquet'"]),
])
def test_table_errors_are_one_line(runs, capsys, args, needles):
    narrow = SearchSpace([Float("lr", 0.01, 0.1), *SPACE.parameters[1:]])
    Path("narrow.json").write_text(json.dumps(narrow.to_dict()))
    Path("bad.json").write_text(json.dumps({"version": 1, "parameters": [
        {"type": "float", "name": "lr", "lower": 1, "upper": 0}]}))
    Path("runs.parquet").write_bytes(b"not parquet")
    code = main(["train", *args, "--out", "t.prior", *TINY])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("metaprior: error: "), (code, lines)
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not Path("t.prior").exists()


def test_train_table_reads_parquet(runs):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.read_csv("runs.csv").to_parquet("runs.parquet")
    assert main(["train", "--table", "runs.parquet", "--task", "dataset", "--output", "loss",
                 "--space", "space.json", "--out", "p.prior", *TINY]) == 0
    assert MetaPrior.load("p.prior").space == SPACE


def test_a_new_user_types_train_info_then_a_study(runs):
    """The must-show path, as typed in a shell: each step is its own process."""
    import subprocess
    import sys

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("-m", "metaprior", "train", "--table", "runs.csv", "--task", "dataset", "--output", "loss",
        "--space", "space.json", "--out", "t.prior", *TINY)
    assert "lr: float in [0.0001, 0.1], log" in run("-m", "metaprior", "info", "t.prior")
    study = run("-c", "import metaprior as mp\n"
                      "prior = mp.MetaPrior.load('t.prior')\n"
                      "opt = mp.Optimizer(prior.space, prior=prior, seed=0, num_restarts=2, raw_samples=16)\n"
                      "trials = opt.ask()\n"
                      "opt.tell(trials, [0.5])\n"
                      "print(sorted(opt.best[0]), trials.shape)\n")
    assert "['layers', 'lr', 'opt'] (1, 3)" in study


def test_cross_validated_steps_on_a_table(runs, capsys):
    """`--cross-validate-steps` trains for the steps that cross-validation chose, recorded in the
    prior; a function family has no fixed tasks to validate on."""
    assert train("--cross-validate-steps") == 0
    prior = MetaPrior.load("t.prior")
    chosen = prior.stats["cross_validation"]
    assert 1 <= chosen["outer_steps"] <= 10 and chosen["folds"] == 5
    assert prior.config.outer_steps == chosen["outer_steps"]
    assert prior.stats["outer_steps_done"] == chosen["outer_steps"]
    assert f"chose {chosen['outer_steps']} of 10 outer steps" in capsys.readouterr().err
    assert main(["train", "forrester", "--out", "f.prior", *TINY, "--cross-validate-steps"]) == 2
    assert "--cross-validate-steps needs a table" in capsys.readouterr().err
