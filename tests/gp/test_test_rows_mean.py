"""The network mean runs on the test points alone when a GP predicts (`TestRowsMean`)."""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from helpers import branin_points, branin_prior

from metaprior.gp.evidence import fit_gp
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.tasks import Branin


def rows_seen_by_the_mean(model, X: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The row counts the mean's network ran on during `model.posterior(X)`, and the
    posterior mean."""
    rows = []
    hook = model.mean_module.network.register_forward_hook(
        lambda _module, inputs, _output: rows.append(inputs[0].shape[-2]))
    try:
        with torch.no_grad():
            mean = model.posterior(X).mean
    finally:
        hook.remove()
    return rows, mean


def test_prediction_runs_the_network_on_the_test_points_alone():
    prior = branin_prior()
    X = branin_points(12)
    Y = Branin().held_out_tasks(1)[0](X).unsqueeze(-1)
    test = branin_points(5, seed=1)
    for model in (MetaPriorModel(X, Y, prior, mode="mean"), ShiftEnsembleModel(X, Y, prior)):
        fit_gp(model)
        model.eval()
        first, mean = rows_seen_by_the_mean(model, test)
        assert first == [12, 5]  # the training points once (the prediction strategy), the test
        again, mean_again = rows_seen_by_the_mean(model, test)
        assert again == [5]
        torch.testing.assert_close(mean_again, mean, rtol=0, atol=0)
        # The same posterior as GPyTorch's own path, which runs the mean on the training points
        # stacked above the test points (SingleTaskGP.forward), to float rounding.
        plain = SingleTaskGP.forward.__get__(model)
        model.forward = plain
        model.prediction_strategy = None
        stacked, plain_mean = rows_seen_by_the_mean(model, test)
        assert stacked == [12, 17]
        torch.testing.assert_close(plain_mean, mean, rtol=1e-9, atol=1e-12)
