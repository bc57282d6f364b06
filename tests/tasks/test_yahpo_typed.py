"""YAHPO scenarios over their real typed spaces: the space, the categorical input, the optimum."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("ConfigSpace")

from metaprior.space import Categorical, Float, Int  # noqa: E402
from metaprior.tasks.family import make_generator  # noqa: E402
from metaprior.tasks.surrogate_search import surrogate_minimum  # noqa: E402
from metaprior.tasks.yahpo import YahpoFamily  # noqa: E402
from metaprior.tasks.yahpo_typed import (  # noqa: E402
    YahpoTypedFamily,
    random_configurations,
)
from tests.tasks.test_yahpo import DATA  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(DATA is None, reason="YAHPO data folder not found")


@pytest.fixture(scope="module")
def rpart():
    return YahpoTypedFamily("rbv2_rpart", DATA, n_random=6, n_dense=200)


def test_rpart_space_is_the_config_space_without_instance_and_fidelities(rpart):
    space = rpart.space
    assert space.names == ["cp", "maxdepth", "minbucket", "minsplit", "num.impute.selected.cpo"]
    assert space["cp"] == Float("cp", space["cp"].lower, 1.0, log=True)
    assert isinstance(space["maxdepth"], Int) and isinstance(space["minsplit"], Int)
    assert space["num.impute.selected.cpo"] == Categorical(
        "num.impute.selected.cpo", ["impute.mean", "impute.median", "impute.hist"])
    assert rpart.dim == space.encoded_dim == 7 and rpart.name == "rbv2_rpart-typed"
    # The table's rows are valid encoded configurations.
    torch.testing.assert_close(space.encode(space.decode(rpart.X)), rpart.X, rtol=0, atol=1e-12)


def test_typed_objective_matches_the_box_family_at_its_fixed_level(rpart):
    box = YahpoFamily("rbv2_rpart", DATA, n_random=2, n_dense=10)
    U = random_configurations(rpart.space, 20, make_generator(0, "u"))
    runs = rpart.space.decode(U)
    runs["num.impute.selected.cpo"] = "impute.mean"  # the level the box family holds fixed
    X = torch.tensor(runs[["cp", "maxdepth", "minbucket", "minsplit"]].to_numpy(float))
    X[:, 0] = torch.log10(X[:, 0])
    inst = rpart.test_instances()[0]
    expected = box.surrogate.objective(inst, X)
    torch.testing.assert_close(rpart.evaluate(inst, rpart.space.encode(runs)), expected)
    # The imputation method is a real input of the surrogate: some configuration feels it.
    other = runs.assign(**{"num.impute.selected.cpo": "impute.hist"})
    moved = [rpart.evaluate(i, rpart.space.encode(other)) - rpart.evaluate(i, rpart.space.encode(runs))
             for i in rpart.test_instances()[:4]]
    assert torch.cat(moved).abs().max() > 1e-6


def test_held_out_minimum_comes_from_a_search_stronger_than_random(rpart):
    inst = rpart.test_instances()[1]
    U = random_configurations(rpart.space, 200, make_generator(1, "dense"))
    y = rpart.evaluate(inst, U)
    found = surrogate_minimum(lambda V: rpart.evaluate(inst, V), rpart.space, U[y.argsort()[:2]])
    assert found <= float(y.min())
    task = rpart.held_out_tasks(2)[1]
    assert task.name == f"rbv2_rpart-typed/{inst}" and task.y_min <= float(y.min()) < task.y_max
    assert float(task(U[:5]).min()) >= task.y_min
