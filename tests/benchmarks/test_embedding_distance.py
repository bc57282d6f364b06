"""`benchmarks.embedding_distance`: each task's embedding against the family's shift prior."""

from __future__ import annotations

import math

from benchmarks.context import build_context
from benchmarks.embedding_distance import BLOCK_TASKS, run


def test_every_task_of_both_blocks_gets_a_distance_and_a_family_probability(tmp_path):
    build_context("forrester", tmp_path, ["metaprior"], quick=True, progress=False)
    df = run(["forrester"], n_points=6, cache=str(tmp_path), yahpo_dir=None)
    assert df.block.value_counts().to_dict() == BLOCK_TASKS
    assert df.task[df.block == "harm"].str.contains("harm").all()
    for _, row in df.iterrows():
        assert row["distance2"] >= 0 and math.isfinite(row["distance2"])
        assert 0.0 <= row["family_probability"] <= 1.0
        assert math.isfinite(row["a"]) and math.isfinite(row["b"])
