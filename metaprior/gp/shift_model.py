"""`ShiftEnsembleModel`: a batch of GPs, one per posterior sample of the task's translation.

Each member `k` has the prior's network moved and rescaled by particle `k` of `infer_shift`
as its mean (`ShiftEnsemble`) and a Matern residual whose variance is fixed at the shift prior's
meta-learned residual. Its posterior is the members' equally weighted mixture
(`GaussianMixturePosterior`), and the model is flagged `_is_ensemble` as BoTorch flags its fully
Bayesian models, so every acquisition function averages over the plausible tasks.
"""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from botorch.models.fully_bayesian import MCMC_DIM
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.kernels import Kernel, ScaleKernel
from torch import Tensor

from metaprior.errors import ConfigError
from metaprior.gp.inputs import check_training_data
from metaprior.gp.kernels import residual_kernel
from metaprior.gp.likelihoods import wide_noise_likelihood
from metaprior.gp.means import NetworkMean
from metaprior.gp.particles import ShiftEnsemble, thin
from metaprior.gp.test_rows_mean import TestRowsMean
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize
from metaprior.prior import MetaPrior
from metaprior.shift import ShiftPrior, infer_shift
from metaprior.validation import check_query, warn_far_from_family

# Ensemble members, each one posterior sample of the task's shift. Cost grows linearly. On
# held-out tuning tasks (not the quality check's), 16 members did as well as 32 at 5
# evaluations (Branin median regret 1.3e-4 vs 2.3e-4, Forrester 3.8e-7 vs 4.0e-7) in half the
# time.
N_MEMBERS = 16


class ShiftEnsembleModel(TestRowsMean, SingleTaskGP):
    """GPs over posterior samples of where this task's copy of the prior's landscape sits.

    Args:
        train_X: `n x d` training inputs in the family's original units.
        train_Y: `n x 1` observations.
        prior: a `MetaPrior` with a shift prior (`meta_train` estimates it;
            `attach_shift_prior` adds it to older files).
        train_Yvar: optional `n x 1` observation noise variances.
        input_transform: default `Normalize` to the prior's bounds.
        outcome_transform: default `FloorStandardize` (see `MetaPriorModel`); `Standardize`
            or None also work.
        seed: seeds the shift sampler.
        n_members: GPs in the ensemble (posterior samples of the shift).
        covar_module: override the members' kernel (its variance is then left free).
        meta_residual: True (default): the residual kernel's variance is fixed at the shift
            prior's meta-learned residual. False: the bare residual kernel, whose variance is
            the outcome transform's unit, so the transform sets the residual's scale (the
            trusted model's, from the shift posterior's held-out errors).
        wide_noise: the members' noise has `wide_noise_likelihood`'s prior (the trusted
            model's informed GPs), so that noiseless observations are interpolated; False
            (default): BoTorch's. Ignored when `likelihood` is given.
        sampler: keyword arguments of `infer_shift` (`n_particles`, `n_proposals`,
            `mh_steps`); None: its defaults.

    Example:
        >>> model = ShiftEnsembleModel(X, Y, prior=prior)
        >>> model.posterior(Xtest).mixture_mean
    """

    _is_ensemble = True
    mode = "shift"

    def __init__(self, train_X: Tensor, train_Y: Tensor, prior: MetaPrior,
                 train_Yvar: Tensor | None = None,
                 input_transform: InputTransform | _DefaultType | None = DEFAULT,
                 outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
                 covar_module: Kernel | None = None, likelihood=None, seed: int = 0,
                 n_members: int = N_MEMBERS, meta_residual: bool = True,
                 wide_noise: bool = False, sampler: dict | None = None) -> None:
        train_X, train_Y = check_training_data("ShiftEnsembleModel", prior, train_X, train_Y, train_Yvar)
        if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
            raise ConfigError(f"n_members must be a positive integer (got {n_members!r})")
        # The shift prior moves and rescales the landscape by amounts seen in the family; an
        # offset far beyond those is left to the residual (measured: +1e4 on Branin misses
        # its own training points by ~75).
        warn_far_from_family(train_Y, prior.y_mean, prior.y_std)
        self.prior = prior
        if input_transform == DEFAULT:
            input_transform = Normalize(d=prior.dim, bounds=prior.bounds.to(train_X))
        if outcome_transform == DEFAULT:
            outcome_transform = FloorStandardize(RESIDUAL_FLOOR * prior.y_std)
        self.shift_particles = infer_shift(prior, prior.to_unit(train_X),
                                           prior.normalize_y(train_Y[:, 0]), seed=seed,
                                           **(sampler or {}))
        network = ShiftEnsemble(prior, thin(self.shift_particles, n_members))
        # One GP per member: a batch of K copies of the data, mixed in `posterior`.
        K = network.n_members
        members = torch.Size([K])
        train_X, train_Y = train_X.repeat(K, 1, 1), train_Y.repeat(K, 1, 1)
        train_Yvar = None if train_Yvar is None else train_Yvar.repeat(K, 1, 1)
        if isinstance(outcome_transform, FloorStandardize):
            outcome_transform = FloorStandardize(outcome_transform.floor, batch_shape=members,
                                                 ceiling=outcome_transform.ceiling)
        elif isinstance(outcome_transform, Standardize):
            outcome_transform = Standardize(m=1, batch_shape=members,
                                            min_stdv=outcome_transform._min_stdv)
        elif outcome_transform is not None:
            raise ConfigError(
                "ShiftEnsembleModel needs a Standardize outcome transform or None, to map the "
                f"network's output into the GP's space (got {type(outcome_transform).__name__})")
        given = covar_module is not None
        if likelihood is None and wide_noise:
            likelihood = wide_noise_likelihood(members)
        if not given and not meta_residual:
            covar_module = residual_kernel(prior.dim, batch_shape=members)
        elif not given:
            # Each member explains the task up to the meta-learned residual; this kernel
            # carries that residual (its variance fixed in `_fix_residual_scale`).
            covar_module = ScaleKernel(residual_kernel(prior.dim, batch_shape=members),
                                       batch_shape=members)
        super().__init__(train_X, train_Y, train_Yvar=train_Yvar, likelihood=likelihood,
                         covar_module=covar_module, mean_module=NetworkMean(network),
                         outcome_transform=outcome_transform, input_transform=input_transform)
        tf = getattr(self, "outcome_transform", None)
        if tf is not None:
            self.mean_module.set_output_map(tf.means, tf.stdvs)
        if not given and meta_residual:
            self._fix_residual_scale(tf.stdvs if tf is not None
                                     else torch.ones(1, dtype=train_X.dtype))

    def _fix_residual_scale(self, stdv: Tensor) -> None:
        """The residual kernel's variance is the shift prior's meta-learned residual (what the
        best shifted network leaves near a minimum), fixed, in standardised units; left free,
        a few points' marginal likelihood inflates it until the members' means no longer
        matter."""
        resid = ShiftPrior.of(self.prior).resid_sd * self.prior.y_std / stdv.reshape(-1)
        self.covar_module.outputscale = resid.square().to(self.covar_module.outputscale)
        self.covar_module.raw_outputscale.requires_grad_(False)

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False,
                  posterior_transform=None, **kwargs) -> GaussianMixturePosterior:
        """The members' equally weighted mixture (members along dimension -3 of its batch)."""
        check_query(X, self.prior.dim, bounds=self.prior.bounds)
        posterior = super().posterior(X.unsqueeze(MCMC_DIM), output_indices=output_indices,
                                      observation_noise=observation_noise,
                                      posterior_transform=posterior_transform, **kwargs)
        return GaussianMixturePosterior(distribution=posterior.distribution)

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs):
        """As `SingleTaskGP`'s, after giving every member its own copy of the new points
        (gpytorch infers the batch from the data, and unbatched X would read as none)."""
        if X.dim() == 2 and Y.dim() == 2:
            X, Y = X.repeat(*self.batch_shape, 1, 1), Y.repeat(*self.batch_shape, 1, 1)
        elif X.dim() < Y.dim():  # fantasies: samples x batch x members x q x 1
            X = X.unsqueeze(MCMC_DIM).expand(*Y.shape[:-2], *X.shape[-2:])
        return super().condition_on_observations(X, Y, **kwargs)

    @property
    def network(self) -> ShiftEnsemble:
        """The members' mean functions."""
        return self.mean_module.network

    @property
    def prior_trust(self) -> float:
        """The model follows the prior fully (its trust is fixed): 1."""
        return 1.0
