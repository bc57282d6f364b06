"""A GP whose network mean runs on the test points alone when it predicts.

GPyTorch predicts by evaluating the prior on the training and test inputs stacked
(`ExactGP._get_test_prior_mean_and_covariances`), then reads only the test rows of that mean:
the training rows' part is the prediction strategy's, computed once. The kernel is lazy there,
but a mean is not, so a network mean ran on every training point at every prediction. In an
acquisition's optimisation that is half the network's work (30 observations next to qLogNEI's
30 baseline points and the candidate), and for the shift ensemble, 16 shifted networks in
float64, it was the largest single cost of the trusted model's acquisition
(`benchmarks/bo_overhead.py`).
"""

from __future__ import annotations

from gpytorch.distributions import MultivariateNormal
from torch import Tensor, cat


class TestRowsMean:
    """Mixin for a `SingleTaskGP` subclass: at prediction, its mean module sees only the test
    rows of the stacked inputs; the training rows take the prediction strategy's training prior
    mean (the same values, which GPyTorch does not read). Listed before `SingleTaskGP`."""

    _test_rows_from: int | None = None

    def _get_test_prior_mean_and_covariances(self, train_inputs, test_inputs, **kwargs):
        # Only inside this call does `forward` receive `[train; test]` stacked.
        self._test_rows_from = self.prediction_strategy.num_train
        try:
            return super()._get_test_prior_mean_and_covariances(train_inputs, test_inputs,
                                                                **kwargs)
        finally:
            self._test_rows_from = None

    def forward(self, x: Tensor) -> MultivariateNormal:
        """`batch x (n_train + m) x d` stacked inputs at prediction, else any inputs."""
        n_train = self._test_rows_from
        if self.training or n_train is None or x.shape[-2] <= n_train:
            return super().forward(x)
        test_mean = self.mean_module(x[..., n_train:, :])  # batch x m
        train_mean = self.prediction_strategy.train_prior_dist.mean  # model batch x n_train
        train_mean = train_mean.expand(*test_mean.shape[:-1], n_train)
        return MultivariateNormal(cat([train_mean, test_mean], dim=-1), self.covar_module(x))
