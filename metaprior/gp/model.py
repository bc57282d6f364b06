"""`MetaPriorModel`: a BoTorch `SingleTaskGP` that starts from a meta-learned prior."""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from botorch.models.fully_bayesian import MCMC_DIM
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.means import ConstantMean
from torch import Tensor

from metaprior.errors import ConfigError, InputDataError
from metaprior.gp.kernels import feature_kernel, residual_kernel
from metaprior.gp.means import NetworkMean
from metaprior.gp.network import FrozenNetwork
from metaprior.gp.particles import ShiftEnsemble, thin
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize
from metaprior.prior import MetaPrior
from metaprior.shift import ShiftPrior, infer_shift
from metaprior.validation import check_X, check_Y

MODES = ("mean", "kernel", "both", "shift")
# Mode "shift": ensemble members, each one posterior sample of the task's shift. Cost grows
# linearly. On held-out tuning tasks (not the quality check's), 16 members did as well as 32 at
# 5 evaluations (Branin median regret 1.3e-4 vs 2.3e-4, Forrester 3.8e-7 vs 4.0e-7) in half the
# time.
N_MEMBERS = 16


class MetaPriorModel(SingleTaskGP):
    """A GP whose mean and/or kernel come from a prior adapted to the observations.

    On construction a copy of the prior's network adapts to `(train_X, train_Y)` with the
    meta-trained inner loop and is frozen; `fit_gpytorch_mll` then fits only the GP's
    hyperparameters (a trainable network inside the marginal likelihood overfits and is slow).

    Args:
        train_X: `n x d` training inputs in the family's original units.
        train_Y: `n x 1` observations.
        prior: the `MetaPrior`.
        mode: "mean" (network mean, Matern residual kernel on inputs), "kernel" (constant mean,
            `ScaleKernel(Matern)` on the network's features plus the residual kernel), "both"
            (network mean and that kernel) or "shift" (no weight adaptation: a batch of GPs, one
            per posterior sample of the network's translation (`metaprior.shift`), each with
            the shifted network as mean and a residual kernel of fixed variance, mixed in
            `posterior`; needs a prior with a shift prior).
        train_Yvar: optional `n x 1` observation noise variances.
        input_transform: default `Normalize` to the prior's bounds (the network's unit cube).
        outcome_transform: default `FloorStandardize` (`Standardize` whose scale stays above 0.3
            of the family's output std); the network mean is mapped into its space.
        adapt_steps: inner steps of the adaptation (default: the prior's `adapt_steps`).
        seed: seeds the adaptation's minibatch order and mode "shift"'s sampler.
        n_members: mode "shift": GPs in the ensemble (posterior samples of the shift).
        covar_module: override the kernel (modes "mean" and "both" keep the network mean).

    Example:
        >>> model = MetaPriorModel(X, Y, prior=prior, mode="both")
        >>> fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    """

    def __init__(self, train_X: Tensor, train_Y: Tensor, prior: MetaPrior, mode: str = "mean",
                 train_Yvar: Tensor | None = None,
                 input_transform: InputTransform | _DefaultType | None = DEFAULT,
                 outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
                 adapt_steps: int | None = None, covar_module: Kernel | None = None,
                 likelihood=None, seed: int = 0, n_members: int = N_MEMBERS) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES} (got {mode!r})")
        if not isinstance(prior, MetaPrior):
            raise ConfigError(f"prior must be a MetaPrior (got {type(prior).__name__})")
        train_X = check_X(train_X, prior.dim, "train_X", allow_batch=False)
        train_Y = check_Y(train_Y, train_X.shape[0], "train_Y")
        if train_X.shape[0] < 1:
            raise InputDataError("MetaPriorModel needs at least one observation; with none, "
                                 "use prior.predict (the zero-shot prior)")
        if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
            raise ConfigError(f"n_members must be a positive integer (got {n_members!r})")
        self.prior = prior
        self.mode = mode
        if input_transform == DEFAULT:
            input_transform = Normalize(d=prior.dim, bounds=prior.bounds.to(train_X))
        if outcome_transform == DEFAULT:
            outcome_transform = FloorStandardize(RESIDUAL_FLOOR * prior.y_std)
        if mode == "shift":
            self.adapted_prior = prior
            self.shift_particles = infer_shift(prior, prior.to_unit(train_X),
                                               prior.normalize_y(train_Y[:, 0]), seed=seed)
            network = ShiftEnsemble(prior, thin(self.shift_particles, n_members))
            # One GP per member: a batch of K copies of the data, mixed in `posterior`.
            K = network.n_members
            train_X, train_Y = train_X.repeat(K, 1, 1), train_Y.repeat(K, 1, 1)
            train_Yvar = None if train_Yvar is None else train_Yvar.repeat(K, 1, 1)
            if isinstance(outcome_transform, FloorStandardize):
                outcome_transform = FloorStandardize(outcome_transform.floor,
                                                     batch_shape=torch.Size([K]))
            elif isinstance(outcome_transform, Standardize):
                outcome_transform = Standardize(m=1, batch_shape=torch.Size([K]),
                                                min_stdv=outcome_transform._min_stdv)
            self._is_ensemble = True
        else:
            self.adapted_prior = prior.adapt(train_X, train_Y, steps=adapt_steps, seed=seed)
            network = FrozenNetwork(self.adapted_prior)
        mean_module = NetworkMean(network) if mode != "kernel" else ConstantMean()
        covar_module_given = covar_module
        if covar_module is None:
            if mode == "mean":
                covar_module = residual_kernel(prior.dim)
            elif mode == "shift":
                # Each member explains the task up to the meta-learned residual; this kernel
                # carries that residual (its variance fixed in `_fix_residual_scale`).
                members = torch.Size([network.n_members])
                covar_module = ScaleKernel(residual_kernel(prior.dim, batch_shape=members),
                                           batch_shape=members)
            else:
                # The deep kernel alone correlates points whose features agree, so near the
                # network's (possibly spurious) minimum it leaves no variance; an input-space
                # residual term keeps BO exploring (measured: stalls without it in mode "both").
                covar_module = feature_kernel(network) + residual_kernel(prior.dim)
        super().__init__(train_X, train_Y, train_Yvar=train_Yvar, likelihood=likelihood,
                         covar_module=covar_module, mean_module=mean_module,
                         outcome_transform=outcome_transform, input_transform=input_transform)
        tf = getattr(self, "outcome_transform", None)
        if isinstance(self.mean_module, NetworkMean):
            if isinstance(tf, Standardize):
                self.mean_module.set_output_map(tf.means, tf.stdvs)
            elif tf is not None:
                raise ConfigError(
                    f"mode {mode!r} needs a Standardize outcome transform or None, to map the "
                    f"network's output into the GP's space (got {type(tf).__name__})"
                )
        if mode == "shift" and covar_module_given is None:
            self._fix_residual_scale(tf.stdvs if tf is not None
                                     else torch.ones(1, dtype=train_X.dtype))

    def _fix_residual_scale(self, stdv: Tensor) -> None:
        """Mode "shift": the residual kernel's variance is the shift prior's meta-learned
        residual (what the best shifted network leaves near a minimum), fixed, in standardised
        units; left free, a few points' marginal likelihood inflates it until the members'
        means no longer matter."""
        resid = ShiftPrior.of(self.prior).resid_sd * self.prior.y_std / stdv.reshape(-1)
        self.covar_module.outputscale = resid.square().to(self.covar_module.outputscale)
        self.covar_module.raw_outputscale.requires_grad_(False)

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False,
                  posterior_transform=None, **kwargs):
        """As `SingleTaskGP.posterior`; mode "shift" returns the members' equally weighted
        mixture (`GaussianMixturePosterior`, members along dimension -3 of its batch)."""
        if self.mode != "shift":
            return super().posterior(X, output_indices=output_indices,
                                     observation_noise=observation_noise,
                                     posterior_transform=posterior_transform, **kwargs)
        posterior = super().posterior(X.unsqueeze(MCMC_DIM), output_indices=output_indices,
                                      observation_noise=observation_noise,
                                      posterior_transform=posterior_transform, **kwargs)
        return GaussianMixturePosterior(distribution=posterior.distribution)

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs):
        """As `SingleTaskGP`'s; mode "shift" first gives every member its own copy of the new
        points (gpytorch infers the batch from the data, and unbatched X would read as none)."""
        if self.mode == "shift":
            if X.dim() == 2 and Y.dim() == 2:
                X, Y = X.repeat(*self.batch_shape, 1, 1), Y.repeat(*self.batch_shape, 1, 1)
            elif X.dim() < Y.dim():  # fantasies: samples x batch x members x q x 1
                X = X.unsqueeze(MCMC_DIM).expand(*Y.shape[:-2], *X.shape[-2:])
        return super().condition_on_observations(X, Y, **kwargs)

    @property
    def network(self) -> FrozenNetwork | ShiftEnsemble:
        """The frozen adapted network (mode "shift": the mixture of shifted networks)."""
        for m in self.modules():
            if isinstance(m, (FrozenNetwork, ShiftEnsemble)):
                return m
        raise AttributeError("no network")  # unreachable: every mode holds one
