"""metaprior.ax: a real `ax.api.Client` minimising held-out tasks through metaprior's nodes: a
Branin box, and the typed `MixedTraining` space (log float, int, choice)."""

from __future__ import annotations

import logging
import warnings

import pytest

pytest.importorskip("ax")

import torch  # noqa: E402
from ax.api import Client  # noqa: E402
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig  # noqa: E402
from helpers import small_config  # noqa: E402

from metaprior import ReptileConfig, meta_train  # noqa: E402
from metaprior.ax import fitted_model, generation_strategy  # noqa: E402
from metaprior.errors import ConfigError, InputDataError, InputDataWarning  # noqa: E402
from metaprior.gp.model import MetaPriorModel  # noqa: E402
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize  # noqa: E402
from metaprior.gp.trusted import TrustedPriorModel  # noqa: E402
from metaprior.tasks import Branin  # noqa: E402
from metaprior.tasks.mixed import MIXED_SPACE, MixedTraining  # noqa: E402
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
    assert isinstance(model, MetaPriorModel)
    # The Optimizer's output floor, not a plain Standardize.
    assert isinstance(model.outcome_transform, FloorStandardize)
    assert model.outcome_transform.floor == pytest.approx(RESIDUAL_FLOOR * branin_prior.y_std)
    X = torch.stack([x for x, _, _ in trials])
    Y = torch.tensor([y for _, y, _ in trials], dtype=torch.float64)
    # The model saw the raw, un-negated outputs (Ax minimises through objective weights) and
    # inputs in original units: its FloorStandardize holds their mean, its Normalize the prior's box.
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
    assert isinstance(model, MetaPriorModel) and model.mode == "both"


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
    model = fitted_model(strategy)  # the default: the Optimizer's trusted model
    assert isinstance(model, TrustedPriorModel)
    assert model.informed.train_targets.shape[-1] == 1  # the NaN trial left no data


def test_a_maximised_objective_is_refused(branin_prior):
    client = make_client(Branin().bounds)
    client.configure_optimization(objective="loss")
    client.set_generation_strategy(generation_strategy(branin_prior))
    with pytest.raises(ConfigError, match="maximises 'loss'.*'-loss'"):
        client.get_next_trials(max_trials=1)


# ---- A typed space: log float, linear float, int, choice
CHEAP = {"num_restarts": 2, "raw_samples": 16}


@pytest.fixture(scope="module")
def mixed_prior():
    cfg = small_config(grid_points=False, points_per_task=30, adapt_steps=8)
    return meta_train(MixedTraining(), cfg, seed=0, progress=False, shift_prior=False)


def mixed_parameters(layers=(1, 8), levels=("adam", "sgd", "rmsprop"), lr_scaling="log"):
    return [RangeParameterConfig(name="learning_rate", bounds=(1e-4, 1e-1),
                                 parameter_type="float", scaling=lr_scaling),
            RangeParameterConfig(name="dropout", bounds=(0.0, 0.5), parameter_type="float"),
            RangeParameterConfig(name="layers", bounds=layers, parameter_type="int"),
            ChoiceParameterConfig(name="optimizer", values=list(levels), parameter_type="str",
                                  is_ordered=False)]


def typed_client(parameters) -> Client:
    logging.getLogger("ax").setLevel(logging.WARNING)
    client = Client()
    client.configure_experiment(parameters=parameters)
    client.configure_optimization(objective="-loss")
    return client


def next_trial(client: Client) -> tuple[int, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (index, params), = client.get_next_trials(max_trials=1).items()
    return index, params


def test_typed_experiment_gets_valid_raw_candidates_and_the_floor(mixed_prior):
    assert mixed_prior.space == MIXED_SPACE
    task = MixedTraining().held_out_tasks(1, seed=7)[0]
    # The choice's levels in another order than the prior's: matched by value.
    client = typed_client(mixed_parameters(levels=("sgd", "rmsprop", "adam")))
    strategy = generation_strategy(mixed_prior, n_init=2, **CHEAP)
    client.set_generation_strategy(strategy)
    nodes, rows = [], []
    for _ in range(4):
        index, params = next_trial(client)
        # valid raw values: the learning rate itself (not its log10), a whole layer count, a level
        assert 1e-4 <= params["learning_rate"] <= 1e-1 and 0.0 <= params["dropout"] <= 0.5
        assert isinstance(params["layers"], int) and 1 <= params["layers"] <= 8
        assert params["optimizer"] in ("adam", "sgd", "rmsprop")
        rows.append(params)
        client.complete_trial(index, raw_data={"loss": float(task(MIXED_SPACE.to_model(params))[0])})
        nodes.append(client._experiment.trials[index].generator_runs[0]._generation_node_name)
    assert nodes == ["ZeroShot", "ZeroShot", "MetaPrior", "MetaPrior"]

    model = fitted_model(strategy)  # the Optimizer's default model, with its output scale
    assert isinstance(model, TrustedPriorModel)
    scale = model.informed.outcome_transform
    # fixed by the network's held-out errors (3 trials: the first scored point), and never
    # wider than the data's spread or the family floor, whichever is larger
    assert isinstance(scale, FloorStandardize) and scale.floor == scale.ceiling
    Y_seen = strategy._curr.optimizer.train_Y
    assert scale.floor <= max(float(Y_seen.std()), RESIDUAL_FLOOR * mixed_prior.y_std) + 1e-12
    # The model saw the trials encoded by the space (the prior's one-hot order).
    X = strategy._curr.optimizer.train_X
    assert torch.equal(X, MIXED_SPACE.to_model(rows[:3]))

    # Two trials at once: the second candidate is chosen with the first one pending.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = list(client.get_next_trials(max_trials=2).values())
    assert len(batch) == 2 and batch[0] != batch[1]
    pending = strategy._curr.optimizer.pending  # the last Optimizer's: the batch's two points
    assert pending.to_dict("records") == [{k: b[k] for k in MIXED_SPACE.names} for b in batch]


def test_typed_experiment_that_differs_from_the_prior_names_the_parameter(mixed_prior):
    cases = [(mixed_parameters(layers=(1, 10)), r"parameter 'layers': upper is 10 here, 8"),
             (mixed_parameters(lr_scaling="linear"), r"parameter 'learning_rate': log is False"),
             (mixed_parameters(levels=("adam", "sgd", "lion")), r"parameter 'optimizer'")]
    for parameters, message in cases:
        client = typed_client(parameters)
        client.set_generation_strategy(generation_strategy(mixed_prior, **CHEAP))
        with pytest.raises(ConfigError, match=message):
            client.get_next_trials(max_trials=1)
        assert len(client._experiment.trials) == 0
    # A constraint between parameters is something a space cannot express.
    client = Client()
    client.configure_experiment(parameters=mixed_parameters(),
                                parameter_constraints=["dropout <= layers"])
    client.configure_optimization(objective="-loss")
    client.set_generation_strategy(generation_strategy(mixed_prior, **CHEAP))
    with pytest.raises(ConfigError, match="parameter constraints"):
        client.get_next_trials(max_trials=1)
