"""Few-shot evaluation: the protocol's output, query/support separation, bad arguments."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from helpers import small_config

from metaprior.errors import ConfigError, InputDataError
from metaprior.meta.evaluate import METHODS, evaluate_few_shot, few_shot_table
from metaprior.meta.reptile import meta_train
from metaprior.tasks import Branin, FunctionFamily, Logistic, TableFamily


def test_columns_methods_and_determinism(tiny_prior):
    df = evaluate_few_shot(tiny_prior, Logistic(), shots=[1, 3, 5], n_tasks=6, seed=1)
    assert list(df.columns) == ["shots", "method", "mse", "mse_se", "n_tasks"]
    assert set(df.method) == set(METHODS) == {"meta_adapted", "random_adapted", "meta_unadapted"}
    assert sorted(df.shots.unique()) == [1, 3, 5] and len(df) == 9
    assert (df.n_tasks == 6).all()
    # mse_se is the standard error of the mean over tasks: four times the tasks, about half.
    more = evaluate_few_shot(tiny_prior, Logistic(), shots=[1, 3, 5], n_tasks=24, seed=1)
    assert 0.3 < (more.mse_se / df.mse_se).median() < 0.75
    again = evaluate_few_shot(tiny_prior, Logistic(), shots=[5, 1, 3, 3], n_tasks=6, seed=1)
    pd.testing.assert_frame_equal(df, again)
    other = evaluate_few_shot(tiny_prior, Logistic(), shots=[1, 3, 5], n_tasks=6, seed=2)
    assert not df.mse.equals(other.mse)
    wide = few_shot_table(df)
    assert list(wide.columns) == list(METHODS) and list(wide.index) == [1, 3, 5]
    # The unadapted meta-init does not depend on K except through the query set.
    un = df[df.method == "meta_unadapted"].mse
    assert un.max() - un.min() < 0.2 * un.mean()


def test_more_adaptation_steps_change_only_adapted_methods(tiny_prior):
    a = evaluate_few_shot(tiny_prior, Logistic(), shots=[4], n_tasks=4, steps=1)
    b = evaluate_few_shot(tiny_prior, Logistic(), shots=[4], n_tasks=4, steps=40)
    a, b = a.set_index("method").mse, b.set_index("method").mse
    assert a["meta_unadapted"] == b["meta_unadapted"]
    assert a["meta_adapted"] != b["meta_adapted"]


def noise_family() -> FunctionFamily:
    """Tasks that a few points cannot predict: high-frequency sines with random phase."""
    return FunctionFamily(
        lambda X, p: torch.sin(40 * X[..., 0] * p[..., :1] + 6.3 * p[..., 1:2]),
        [[0.0], [1.0]],
        lambda n, g: 1 + torch.rand(n, 2, generator=g, dtype=torch.float64),
        name="noise",
    )


def test_score_is_on_query_points_not_support():
    fam = noise_family()
    prior = meta_train(fam, small_config(outer_steps=5, grid_points=False), seed=0,
                       progress=False, shift_prior=False)
    df = evaluate_few_shot(prior, fam, shots=[1, 2], n_tasks=16, steps=100).set_index(
        ["shots", "method"]).mse
    # 100 steps fit one or two support points almost exactly ...
    task = fam.held_out_tasks(1, seed=3)[0]
    X = torch.tensor([[0.21], [0.77]], dtype=torch.float64)
    Y = task(X).unsqueeze(-1)
    fitted = prior.adapt(X, Y, steps=100)
    support_mse = float((fitted.predict(X) - Y).square().mean()) / prior.y_std**2
    assert support_mse < 0.05
    # ... yet the reported MSE stays at the family's variance: it is measured off the support.
    for k in (1, 2):
        assert df[(k, "meta_adapted")] > 0.5
        assert df[(k, "random_adapted")] > 0.5


def test_table_family_uses_its_test_tasks():
    rows = []
    for t in range(6):
        for i in range(30):
            x = i / 29
            rows.append({"task": f"t{t}", "x": x, "y": (x - t / 6) ** 2})
    fam = TableFamily.from_dataframe(pd.DataFrame(rows), task="task", inputs=["x"], output="y",
                                     test_tasks=["t2", "t5"])
    cfg = small_config(outer_steps=3, tasks_per_step=2, points_per_task=10, grid_points=False)
    prior = meta_train(fam, cfg, progress=False, shift_prior=False)
    df = evaluate_few_shot(prior, fam, shots=[1, 5], n_tasks=2, n_query=20)
    assert len(df) == 6 and df.mse.notna().all()
    # 30 rows per task: K=29 plus 30 query points asks for more than a task holds, so the
    # query is the padded remainder (one real point); K=30 leaves none.
    df = evaluate_few_shot(prior, fam, shots=[29], n_tasks=2, n_query=30)
    assert df.mse.notna().all()
    with pytest.raises(InputDataError, match="K=30"):
        evaluate_few_shot(prior, fam, shots=[30], n_tasks=2, n_query=5)


@pytest.mark.parametrize("shots", [[0], [], [-2, 3], range(0)])
def test_bad_shots(tiny_prior, shots):
    with pytest.raises(ConfigError, match="shots"):
        evaluate_few_shot(tiny_prior, Logistic(), shots=shots, n_tasks=2)


def test_family_of_another_dimension(tiny_prior):
    with pytest.raises(InputDataError, match="dim 1.*branin.*2"):
        evaluate_few_shot(tiny_prior, Branin(), shots=[1], n_tasks=2)
