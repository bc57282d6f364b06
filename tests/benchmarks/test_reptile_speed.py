"""benchmarks/reptile_speed.py runs end to end on a tiny budget and reuses a reference run."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import reptile_speed


def test_quick_run_then_reuse_of_its_sequential_reference(tmp_path):
    first = tmp_path / "first.csv"
    df = reptile_speed.main(["--quick", "--adaptations", "40", "--batch-sizes", "1", "20",
                             "--paths", "compiled", "--outers", "sgd", "--out", str(first)])
    assert list(df.method)[0] == "sequential (seed)"
    assert set(df.B) == {1, 20} and set(df.outer) == {"sgd"}
    assert (df.task_adaptations == 40).all()
    # Speed-up per CPU second against the sequential reference (the first row), for the same
    # 40 adaptations: its CPU seconds over each row's.
    reference_cpu = df.cpu_seconds.iloc[0]
    assert np.allclose(df.speedup, reference_cpu / df.cpu_seconds)
    assert np.isfinite(df.mse_meta_adapted).all()  # no run diverged

    second = tmp_path / "second.csv"
    more = reptile_speed.main(["--quick", "--adaptations", "40", "--batch-sizes", "20",
                               "--paths", "compiled", "--outers", "adam", "--reference",
                               str(first), "--out", str(second)])
    # The earlier rows are kept as they were (its sequential run is not rerun) and the new
    # rows are added after them.
    assert more.iloc[:len(df)][reptile_speed.RAW_COLUMNS].equals(df[reptile_speed.RAW_COLUMNS])
    assert list(more.outer[len(df):]) == ["adam"]
    # ... and the new rows' speed-up is against the reused reference's time.
    assert np.allclose(more.speedup, reference_cpu / more.cpu_seconds)


def test_a_reference_of_another_budget_is_refused(tmp_path):
    first = tmp_path / "first.csv"
    reptile_speed.main(["--quick", "--adaptations", "20", "--batch-sizes", "10", "--paths",
                        "compiled", "--outers", "sgd", "--out", str(first)])
    with pytest.raises(SystemExit, match="40 adaptations"):
        reptile_speed.main(["--quick", "--adaptations", "40", "--reference", str(first),
                            "--out", str(tmp_path / "x.csv")])


def test_a_users_kernel_setting_survives_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPRIOR_CPU_KERNEL", "0")
    reptile_speed.main(["--quick", "--adaptations", "20", "--batch-sizes", "10", "--outers",
                        "sgd", "--out", str(tmp_path / "x.csv")])
    assert reptile_speed.os.environ["METAPRIOR_CPU_KERNEL"] == "0"


def test_the_forced_variant_runs_and_every_row_names_the_cpu(tmp_path):
    from metaprior import cpu_kernel

    if "avx2" not in cpu_kernel.supported() or cpu_kernel.load("avx2") is None:
        pytest.skip("this CPU (or toolchain) cannot run the AVX2 variant")
    df = reptile_speed.main(["--quick", "--adaptations", "20", "--batch-sizes", "10",
                             "--outers", "sgd", "--variant", "avx2",
                             "--out", str(tmp_path / "x.csv")])
    assert list(df.variant) == ["-", "pytorch", "avx2"]  # the sequential row has none
    assert df.cpu.nunique() == 1 and "(" in df.cpu.iloc[0]  # model (vector features)


def test_the_loop_alone_is_timed_on_every_variant_this_cpu_runs(tmp_path):
    from metaprior import cpu_kernel

    out = tmp_path / "loop.csv"
    df = reptile_speed.main(["--loop-only", "--quick", "--dims", "3", "--batch-sizes", "2",
                             "--out", str(out)])
    built = [v for v in cpu_kernel.supported() if cpu_kernel.load(v) is not None]
    assert list(df.loop) == ["pytorch", *built]
    assert (df.adaptations_per_cpu_s > 0).all() and out.exists()
