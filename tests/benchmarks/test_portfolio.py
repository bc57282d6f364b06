"""The portfolio baseline: greedy order by hand, ask/tell, exact losses on training tasks."""

from __future__ import annotations

import pickle

import pytest
import torch

from benchmarks.baselines.portfolio import (
    PortfolioOptimizer,
    best_configurations,
    greedy_order,
    nearest_losses,
)
from benchmarks.baselines.source_data import source_data_from_family
from benchmarks.baselines.training_tasks import (
    check_reproduces,
    evaluated_losses,
    training_objectives,
)
from benchmarks.context import build_source
from benchmarks.methods import METHODS, Context, RandomSearch, UnitCubeAdapter, make_method
from metaprior.errors import ConfigError, InputDataError, TaskFamilyError
from metaprior.space import box_to_unit
from metaprior.tasks import Forrester, TableFamily

torch.set_num_threads(1)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).unsqueeze(-1)


def hand_made_source() -> list:
    """Three 1-D tasks, each seen at three points near 0.1, 0.5 and 0.9 (nearest points are
    unambiguous). Normalised losses (rows: tasks; columns: the points near 0.1, 0.5, 0.9):

        task 0: 0    0.1  1      best near 0.1 (candidate 0: x = 0.10)
        task 1: 0.1  0    1      best near 0.5 (candidate 1: x = 0.48)
        task 2: 1    0.9  0      best near 0.9 (candidate 2: x = 0.92), in units 5 + 100 v

    Mean losses: 0.367, 0.333, 0.667, so candidate 1 comes first. Then adding candidate 0 leaves
    per-task minima (0, 0, 0.9), mean 0.3, and adding candidate 2 leaves (0.1, 0, 0), mean 0.033:
    candidate 2, though its mean loss is the worst. Order: 1, 2, 0. Without the per-task
    normalisation, task 2's scale would put candidate 2 first.
    """
    return [
        (t(0.90, 0.10, 0.50), t(1.0, 0.0, 0.1)),
        (t(0.12, 0.48, 0.88), t(0.1, 0.0, 1.0)),
        (t(0.52, 0.08, 0.92), t(95.0, 105.0, 5.0)),
    ]


def test_greedy_order_on_a_hand_made_source_set():
    source = hand_made_source()
    torch.testing.assert_close(best_configurations(source), t(0.10, 0.48, 0.92))
    # Nearest observed points: here every candidate's loss is a value its task really took.
    torch.testing.assert_close(nearest_losses(source, best_configurations(source)), torch.tensor(
        [[0.0, 0.1, 1.0], [0.1, 0.0, 1.0], [105.0, 95.0, 5.0]], dtype=torch.float64))
    opt = PortfolioOptimizer(source, 1)
    torch.testing.assert_close(opt.portfolio, t(0.48, 0.92, 0.10))


def test_a_given_loss_table_decides_the_order_and_ties_are_broken_by_mean_then_index():
    # Normalised: task 0 (0, 1, 0.2), task 1 (1, 0, 0.2), task 2 (1, 1, 0). Candidate 2 has the
    # lowest mean; then candidates 0 and 1 both leave a mean of 0.2 / 3 and have the same mean
    # loss 2/3, so the lower index goes first: 2, 0, 1.
    losses = torch.tensor([[0.0, 1.0, 0.2], [1.0, 0.0, 0.2], [105.0, 105.0, 5.0]],
                          dtype=torch.float64)
    opt = PortfolioOptimizer(hand_made_source(), 1, losses=losses)
    torch.testing.assert_close(opt.portfolio, t(0.92, 0.10, 0.48))
    assert greedy_order(torch.tensor([[0.5, 0.5], [0.5, 0.5]])) == [0, 1]


def test_asks_follow_the_portfolio_then_reproducible_random_points():
    source = hand_made_source()
    opt = PortfolioOptimizer(source, 1, seed=3)
    asked = []
    for _ in range(6):
        X = opt.ask()
        assert X.shape == (1, 1) and X.dtype == torch.float64
        opt.tell(X, torch.zeros(1))
        asked.append(X)
    torch.testing.assert_close(torch.cat(asked[:3]), opt.portfolio)
    after = torch.cat(asked[3:])
    assert ((after >= 0) & (after <= 1)).all() and after.unique().numel() == 3
    # The same seed gives the same points, whether or not anything is told; another seed not.
    again = PortfolioOptimizer(source, 1, seed=3)
    torch.testing.assert_close(torch.cat([again.ask() for _ in range(6)]), torch.cat(asked))
    other = PortfolioOptimizer(source, 1, seed=4)
    assert not torch.equal(torch.cat([other.ask() for _ in range(6)])[3:], after)
    assert opt.X.shape == (6, 1) and opt.Y.shape == (6, 1)


def test_a_configuration_shared_by_two_tasks_is_asked_once():
    source = hand_made_source()
    source.append((t(0.48, 0.7), t(-1.0, 2.0)))  # its best is task 1's best, 0.48
    opt = PortfolioOptimizer(source, 1)
    assert opt.portfolio.shape == (3, 1)
    assert opt.portfolio.unique().numel() == 3


def test_bad_inputs_raise_typed_errors_naming_the_value():
    source = hand_made_source()
    with pytest.raises(InputDataError, match=r"3 x 3 .*\(2, 3\)"):
        PortfolioOptimizer(source, 1, losses=torch.zeros(2, 3))
    bad = torch.zeros(3, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(InputDataError, match=r"\[1, 2\]: nan"):
        PortfolioOptimizer(source, 1, losses=bad)
    with pytest.raises(InputDataError, match="at least one task"):
        PortfolioOptimizer([], 1)
    with pytest.raises(InputDataError, match=r"source task 1 needs >= 2 points \(got 1\)"):
        PortfolioOptimizer([source[0], (t(0.5), t(1.0))], 1)
    with pytest.raises(InputDataError, match="2 columns"):
        PortfolioOptimizer(source, 2)
    with pytest.raises(ConfigError, match=r"\(got 0\)"):
        PortfolioOptimizer(source, 0)
    opt = PortfolioOptimizer(source, 1)
    with pytest.raises(InputDataError, match=r"\(2,\)"):
        opt.tell(t(0.5), torch.zeros(2))


def test_training_objectives_reproduce_the_source_data_and_give_exact_losses():
    fam = Forrester()
    source = source_data_from_family(fam, n_tasks=6, n_points=8, seed=1)
    objectives = training_objectives(fam, 6, 8, seed=1)
    check_reproduces(objectives, source)
    losses = evaluated_losses(objectives, best_configurations(source))
    assert losses.shape == (6, 6)
    torch.testing.assert_close(losses.diagonal(), torch.stack([Y.min() for _, Y in source]))
    # Paired with the wrong tasks, the objectives are refused.
    with pytest.raises(TaskFamilyError, match="objective 0 does not reproduce source task 0"):
        check_reproduces(objectives[::-1], source)
    # A plain table cannot evaluate new points: no objectives (the portfolio estimates).
    table = TableFamily(torch.rand(8, 1, dtype=torch.float64), torch.rand(8), ["a", "b"],
                        torch.tensor([4, 4]), torch.tensor([[0.0], [1.0]]), ["b"], name="t")
    assert training_objectives(table, 1, 4, seed=0) is None


def test_source_cache_gains_the_loss_table_and_the_method_asks_it_in_original_units(tmp_path):
    fam = Forrester()
    path = tmp_path / "forrester.source.pkl"
    build_source(fam, path, ["rgpe"], quick=True)
    with open(path, "rb") as f:
        assert "portfolio_losses" not in pickle.load(f)
    build_source(fam, path, ["rgpe", "portfolio"], quick=True)  # an older cache gains it
    with open(path, "rb") as f:
        blob = pickle.load(f)
    M = len(blob["source_data"])
    assert blob["portfolio_losses"].shape == (M, M)
    assert "portfolio" in METHODS
    ctx = Context(family=fam, prior=None, source_data=blob["source_data"],
                  portfolio_losses=blob["portfolio_losses"])
    method = make_method("portfolio", ctx, seed=0)
    first = method.ask()
    expected = PortfolioOptimizer(blob["source_data"], 1, losses=blob["portfolio_losses"])
    torch.testing.assert_close(box_to_unit(first, fam.bounds), expected.portfolio[:1])


@pytest.mark.quality
def test_portfolio_beats_random_points_on_held_out_forrester_tasks():
    fam = Forrester()
    source = source_data_from_family(fam, n_tasks=32, n_points=16, seed=0)
    losses = evaluated_losses(training_objectives(fam, 32, 16, seed=0), best_configurations(source))
    regret = {"portfolio": 0.0, "random": 0.0}
    for i, task in enumerate(fam.held_out_tasks(8, seed=0)):
        methods = {"portfolio": UnitCubeAdapter(PortfolioOptimizer(source, 1, seed=i,
                                                                   losses=losses), fam.bounds),
                   "random": RandomSearch(fam.bounds, seed=i)}
        for name, method in methods.items():
            best = float(task(torch.cat([method.ask() for _ in range(3)])).min())
            regret[name] += (best - task.y_min) / (task.y_max - task.y_min)
    assert regret["portfolio"] < 0.5 * regret["random"], regret
