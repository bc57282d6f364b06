"""metaprior.ax: a real `ax.api.Client` minimising a held-out Branin task with MetaPriorModel."""

from __future__ import annotations

import logging
import warnings

import pytest

pytest.importorskip("ax")

import torch  # noqa: E402
from ax.api import Client  # noqa: E402
from ax.api.configs import RangeParameterConfig  # noqa: E402

from metaprior import ReptileConfig, meta_train  # noqa: E402
from metaprior.ax import AxMetaPriorModel, fitted_model, generation_strategy  # noqa: E402
from metaprior.errors import ConfigError, InputDataError, InputDataWarning  # noqa: E402
from metaprior.tasks import Branin  # noqa: E402
from metaprior.zero_shot import prior_minimizer  # noqa: E402

N_TRIALS = 6


@pytest.fixture(scope="module")
def branin_prior():
    cfg = ReptileConfig(outer_steps=150, tasks_per_step=8, points_per_task=30, inner_steps=4,
                        adapt_steps=16, outer_lr=0.01)
    return meta_train(Branin(), cfg, seed=0, progress=False)


def make_client(bounds: torch.Tensor, names=("x0", "x1")) -> Client:
    logging.getLogger("ax").setLevel(logging.WARNING)
    client = Client()
    client.configure_experiment(parameters=[
        RangeParameterConfig(name=n, bounds=(float(bounds[0, j]), float(bounds[1, j])),
                             parameter_type="float") for j, n in enumerate(names)])
    client.configure_optimization(objective="-loss")  # minimise
    return client


def run_trials(client: Client, fn, n: int) -> list[tuple[torch.Tensor, float, str]]:
    out = []
    for _ in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (index, params), = client.get_next_trials(max_trials=1).items()
        x = torch.tensor([[params["x0"], params["x1"]]], dtype=torch.float64)
        y = float(fn(x)[0])
        client.complete_trial(index, raw_data={"loss": y})
        node = client._experiment.trials[index].generator_runs[0]._generation_node_name
        out.append((x[0], y, node))
    return out


def test_client_minimises_with_meta_prior_model(branin_prior):
    fam = Branin()
    task = fam.held_out_tasks(1, seed=7)[0]
    client = make_client(fam.bounds)
    strategy = generation_strategy(branin_prior, mode="mean")
    client.set_generation_strategy(strategy)
    trials = run_trials(client, task, N_TRIALS)

    # first trial: the prior's zero-shot minimiser; every later one from the model node
    assert [node for _, _, node in trials] == ["ZeroShot"] + ["MetaPrior"] * (N_TRIALS - 1)
    x0 = prior_minimizer(branin_prior, fam.bounds, seed=0)
    assert torch.allclose(trials[0][0], x0, atol=1e-5)

    model = fitted_model(strategy)
    assert isinstance(model, AxMetaPriorModel)
    X = torch.stack([x for x, _, _ in trials])
    Y = torch.tensor([y for _, y, _ in trials], dtype=torch.float64)
    # The model saw the raw, un-negated outputs (Ax minimises through objective weights) and
    # inputs in original units: its Standardize holds their mean, its Normalize the prior's box.
    n_fit = model.train_targets.shape[-1]
    assert n_fit == N_TRIALS - 1  # fitted before the last trial was generated
    assert model.outcome_transform.means.item() == pytest.approx(float(Y[:n_fit].mean()),
                                                                  rel=1e-6)
    assert torch.allclose(model.input_transform.bounds, branin_prior.bounds)
    with torch.no_grad():
        mean = model.posterior(X[:n_fit]).mean.squeeze(-1)
    assert torch.corrcoef(torch.stack([mean, Y[:n_fit]]))[0, 1] > 0.9

    # sanity: better than the median of random points on this task
    g = torch.Generator().manual_seed(0)
    lo, hi = fam.bounds
    random_y = task(lo + torch.rand(256, 2, generator=g, dtype=torch.float64) * (hi - lo))
    best = min(Y.tolist())
    assert best < float(random_y.median())
    params, values, _, _ = client.get_best_parameterization(use_model_predictions=False)
    assert values["loss"][0] == pytest.approx(best)


def test_sobol_start_and_mode_both(branin_prior):
    fam = Branin()
    task = fam.held_out_tasks(1, seed=8)[0]
    client = make_client(fam.bounds)
    strategy = generation_strategy(branin_prior, mode="both", zero_shot=False, n_init=2, seed=1)
    client.set_generation_strategy(strategy)
    trials = run_trials(client, task, 3)
    assert [node for _, _, node in trials] == ["ZeroShot", "ZeroShot", "MetaPrior"]
    model = fitted_model(strategy)
    assert isinstance(model, AxMetaPriorModel) and model.mode == "both"


def test_bad_arguments_and_mismatched_experiment(branin_prior):
    with pytest.raises(ConfigError, match="'median'"):
        generation_strategy(branin_prior, mode="median")
    with pytest.raises(ConfigError, match="0"):
        generation_strategy(branin_prior, n_init=0)
    with pytest.raises(ConfigError, match="MetaPrior"):
        generation_strategy("branin.prior")
    client = make_client(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), names=("a", "b", "c"))
    client.set_generation_strategy(generation_strategy(branin_prior))
    with pytest.raises(InputDataError, match="3 parameters"):
        client.get_next_trials(max_trials=1)


def test_parameters_in_another_order_or_with_other_names_are_refused(branin_prior):
    fam = Branin()
    swapped = fam.bounds.flip(-1)
    client = make_client(swapped, names=("x1", "x0"))
    client.set_generation_strategy(generation_strategy(branin_prior))
    with pytest.raises(InputDataError, match=r"\['x1', 'x0'\] are the prior's inputs in another "
                                             r"order; the prior expects \['x0', 'x1'\]"):
        client.get_next_trials(max_trials=1)
    client = make_client(fam.bounds, names=("lr", "depth"))
    client.set_generation_strategy(generation_strategy(branin_prior))
    with pytest.raises(InputDataError, match=r"\['lr', 'depth'\] do not match .*\['x0', 'x1'\]"):
        client.get_next_trials(max_trials=1)
    # The Sobol start checks the experiment before its first trial too.
    client = make_client(fam.bounds, names=("x1", "x0"))
    client.set_generation_strategy(generation_strategy(branin_prior, zero_shot=False))
    with pytest.raises(InputDataError, match="another order"):
        client.get_next_trials(max_trials=1)
    # Named inputs: the experiment's names must follow them.
    client = make_client(fam.bounds, names=("lr", "depth"))
    client.set_generation_strategy(generation_strategy(branin_prior, input_names=["lr", "depth"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (index, params), = client.get_next_trials(max_trials=1).items()
    assert set(params) == {"lr", "depth"}
    with pytest.raises(ConfigError, match="2 distinct names"):
        generation_strategy(branin_prior, input_names=["lr"])


def test_two_objectives_are_refused_before_the_first_trial(branin_prior):
    client = make_client(Branin().bounds)
    client.configure_optimization(objective="-loss, -cost")
    client.set_generation_strategy(generation_strategy(branin_prior))
    with pytest.raises(ConfigError, match=r"one objective.*\['cost', 'loss'\]"):
        client.get_next_trials(max_trials=1)
    assert len(client._experiment.trials) == 0


def test_a_nan_outcome_is_skipped_with_a_warning(branin_prior):
    fam = Branin()
    task = fam.held_out_tasks(1, seed=7)[0]
    client = make_client(fam.bounds)
    strategy = generation_strategy(branin_prior)
    client.set_generation_strategy(strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (index, params), = client.get_next_trials(max_trials=1).items()
    client.complete_trial(index, raw_data={"loss": float("nan")})
    # Ax drops the NaN; without a finite value the model node would fail inside Ax.
    with pytest.warns(InputDataWarning, match=r"trials \[0\] reported NaN or inf for 'loss'"):
        (index, params), = client.get_next_trials(max_trials=1).items()
    assert client._experiment.trials[index].generator_runs[0]._generation_node_name == "ZeroShot"
    x = torch.tensor([[params["x0"], params["x1"]]], dtype=torch.float64)
    client.complete_trial(index, raw_data={"loss": float(task(x)[0])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (index, params), = client.get_next_trials(max_trials=1).items()
    assert client._experiment.trials[index].generator_runs[0]._generation_node_name == "MetaPrior"
    assert fitted_model(strategy).train_targets.shape[-1] == 1  # the NaN trial left no data
