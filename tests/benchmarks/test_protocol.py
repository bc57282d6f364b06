"""The one-command protocol at smoke scale: provenance, resuming, one commit, the report."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from benchmarks import protocol_report
from benchmarks import run as bench_run
from benchmarks.protocol import PROTOCOLS, run_protocol
from benchmarks.provenance import read_rows
from benchmarks.run import COLUMNS, PROVENANCE, MixedCommitsError, Run, RunsFailedError

SMOKE = PROTOCOLS["smoke"]
README = "# metaprior\n\ntext before\n\n" + protocol_report.BEGIN + "\nold\n" + \
    protocol_report.END + "\n\ntext after\n"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "v2"
    origin = run_protocol(SMOKE, out, workers=1, allow_dirty=True, progress=False)
    return out, origin


def test_every_row_says_where_it_came_from(done):
    out, origin = done
    help_df, harm_df = read_rows(out / "help.csv"), read_rows(out / "harm.csv")
    cal = read_rows(out / "calibration.csv")
    for df in (help_df, harm_df, cal):
        for column in PROVENANCE:
            assert (df[column] == origin[column]).all(), column
    assert list(help_df.columns) == COLUMNS
    assert "cores" in origin["machine"] and "torch" in origin["versions"]
    block = SMOKE.block("help")
    runs = help_df.groupby(["family", "task", "seed", "method"]).iteration.max()
    assert len(runs) == len(SMOKE.families) * block.tasks * block.seeds * len(block.methods)
    assert (runs == block.budget).all()
    assert set(harm_df.block) == {"harm"} and set(harm_df.method) == {"bo", "metaprior"}
    assert set(cal.model) == {"metaprior", "bo"} and set(cal.n) == {1, 5, 10}


def test_a_second_call_resumes_and_adds_nothing(done):
    out, _ = done
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    run_protocol(SMOKE, out, workers=1, allow_dirty=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before


def test_an_interrupted_block_is_completed_from_where_it_stopped(done, tmp_path):
    out, _ = done
    copy = tmp_path / "v2"
    shutil.copytree(out, copy)
    help_df = read_rows(copy / "help.csv")
    first = help_df.groupby(["family", "task", "seed", "method"]).ngroup() == 0
    help_df[~first].to_csv(copy / "help.csv", index=False)  # one run lost
    run_protocol(SMOKE, copy, workers=1, allow_dirty=True, progress=False)
    again = read_rows(copy / "help.csv")
    assert len(again) == len(help_df)
    lost = help_df[first].drop(columns="seconds").reset_index(drop=True)
    redone = again.tail(len(lost)).drop(columns="seconds").reset_index(drop=True)
    pd.testing.assert_frame_equal(redone, lost)  # the same run, the same numbers


def test_rows_of_another_commit_are_refused(done, tmp_path):
    out, _ = done
    copy = tmp_path / "v2"
    shutil.copytree(out, copy)
    harm = read_rows(copy / "harm.csv")
    harm.loc[0, "commit"] = "1111111"  # another commit with the same code: one version
    harm.to_csv(copy / "harm.csv", index=False)
    assert protocol_report.main([str(copy), "--protocol", "smoke", "--no-readme",
                                 "--no-plots"]) == 0
    assert "- One code version" in (copy / "report.md").read_text()
    harm.loc[0, ["commit", "code"]] = ["0000000", "000000000000"]
    harm.to_csv(copy / "harm.csv", index=False)
    with pytest.raises(MixedCommitsError, match="0000000"):
        run_protocol(SMOKE, copy, workers=1, allow_dirty=True, progress=False)
    with pytest.raises(protocol_report.ReportError, match="several commits"):
        protocol_report.main([str(copy), "--protocol", "smoke", "--no-readme", "--no-plots"])
    assert protocol_report.main([str(copy), "--protocol", "smoke", "--no-readme", "--no-plots",
                                 "--allow-mixed"]) == 0
    report = (copy / "report.md").read_text()  # which rows each commit made, and the command
    assert f"- `0000000`: harm: {harm.loc[0, 'method']}" in report
    assert "--protocol smoke --allow-mixed`" in report


def test_the_report_writes_the_readme_section_and_regenerating_changes_nothing(done, tmp_path):
    out, origin = done
    readme = tmp_path / "README.md"
    readme.write_text(README)
    args = [str(out), "--protocol", "smoke", "--readme", str(readme), "--no-plots"]
    assert protocol_report.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# metaprior\n\ntext before") and text.endswith("text after\n")
    assert "old" not in text and origin["commit"] in text
    for family in SMOKE.families:
        assert family in text
    assert "Partial" not in text
    assert protocol_report.main([*args, "--check"]) == 0
    readme.write_text(text.replace("forrester", "forester", 1))
    assert protocol_report.main([*args, "--check"]) == 1
    assert (out / "report.md").read_text() in text


def test_a_readme_without_markers_is_refused(done, tmp_path):
    out, _ = done
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(protocol_report.ReportError, match="markers"):
        protocol_report.main([str(out), "--protocol", "smoke", "--readme", str(readme),
                              "--no-plots"])


def test_a_cut_off_append_is_repaired_and_only_the_last_run_is_redone(done, tmp_path):
    out, _ = done
    copy = tmp_path / "v2"
    shutil.copytree(out, copy)
    path = copy / "help.csv"
    whole = path.read_bytes()
    lines = whole.splitlines(keepends=True)
    # a kill while the last run's rows were written: two rows of it, the third cut mid-line
    budget = SMOKE.block("help").budget
    cut = b"".join(lines[:len(lines) - budget + 2]) + lines[len(lines) - budget + 2][:9]
    path.write_bytes(cut)
    kept = bench_run.repair_results(path, budget)
    assert path.read_bytes() == b"".join(lines[:len(lines) - budget])
    assert len(kept) == len(lines) - 1 - budget
    run_protocol(SMOKE, copy, workers=1, allow_dirty=True, progress=False)
    again = read_rows(path)
    assert len(again) == len(lines) - 1
    assert not again.duplicated(subset=["family", "task", "seed", "method", "iteration"]).any()


def test_a_failing_run_does_not_cost_the_others(done, tmp_path):
    out, origin = done
    path = tmp_path / "runs.csv"
    good = Run("forrester", 0, 0, "random", 3, 1)
    bad = Run("forrester", 0, 0, "no-such-method", 3, 1)
    with pytest.raises(RunsFailedError, match="(?s)1 of 3 runs failed.*no-such-method"):
        bench_run.execute([(path, good), (path, bad), (path, Run("branin", 0, 0, "random", 3, 1))],
                str(out / "cache"), None, workers=1, origin=origin, progress=False)
    rows = read_rows(path)
    assert set(rows.family) == {"forrester", "branin"} and len(rows) == 6


def test_the_report_reads_partial_files(done, tmp_path):
    out, _ = done
    copy = tmp_path / "v2"
    shutil.copytree(out, copy)
    help_df = read_rows(copy / "help.csv")
    # branin: only uninformed BO finished; forrester: everything
    help_df[(help_df.family != "branin") | (help_df.method == "bo")].to_csv(copy / "help.csv",
                                                                          index=False)
    harm = read_rows(copy / "harm.csv")
    harm[harm.method == "bo"].to_csv(copy / "harm.csv", index=False)  # no default yet
    text = protocol_report.render(protocol_report.load(copy), SMOKE, copy)
    assert "**Partial**" in text and "| forrester |" in text
    assert "#### Harm" not in text  # nothing to pair bo with
    head = read_rows(copy / "harm.csv").head(0)
    head.to_csv(copy / "harm.csv", index=False)  # an interrupted start: the header only
    assert "harm: 0 of" in protocol_report.render(protocol_report.load(copy), SMOKE, copy)


def test_a_commit_that_looks_like_a_number_is_read_as_text(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("commit,versions,machine,y\n989e222,v,m,1.0\n0123456,v,m,2.0\n")
    assert read_rows(path).commit.tolist() == ["989e222", "0123456"]
