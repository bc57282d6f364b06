"""`MetaPriorModel`: a BoTorch `SingleTaskGP` that starts from a meta-learned prior."""

from __future__ import annotations

from botorch.models import SingleTaskGP
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.kernels import Kernel
from gpytorch.means import ConstantMean
from torch import Tensor

from metaprior.errors import ConfigError
from metaprior.gp.inputs import check_training_data
from metaprior.gp.kernels import feature_kernel, residual_kernel
from metaprior.gp.means import NetworkMean, WeightedNetworkMean
from metaprior.gp.network import FrozenNetwork
from metaprior.gp.test_rows_mean import TestRowsMean
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize
from metaprior.prior import MetaPrior
from metaprior.validation import check_query, warn_far_from_family

MODES = ("mean", "weighted", "kernel", "both")


class MetaPriorModel(TestRowsMean, SingleTaskGP):
    """A GP whose mean and/or kernel come from a prior adapted to the observations.

    On construction a copy of the prior's network adapts to `(train_X, train_Y)` with the
    meta-trained inner loop and is frozen; `fit_gpytorch_mll` then fits only the GP's
    hyperparameters (a trainable network inside the marginal likelihood overfits and is slow).

    Args:
        train_X: `n x d` training inputs in the family's original units.
        train_Y: `n x 1` observations.
        prior: the `MetaPrior`.
        mode: "mean" (network mean, Matern residual kernel on inputs), "weighted" (the
            meta-init network, unadapted, times a weight fitted with the kernel, plus a
            constant, see `WeightedNetworkMean`), "kernel" (constant mean,
            `ScaleKernel(Matern)` on the network's features plus the residual kernel), "both"
            (network mean and that kernel; "kernel" alone is the weakest mode in the benchmark,
            kept as an ablation). The task-translation ensemble is `ShiftEnsembleModel`.
        train_Yvar: optional `n x 1` observation noise variances.
        input_transform: default `Normalize` to the prior's bounds (the network's unit cube).
        outcome_transform: default `FloorStandardize` (`Standardize` whose scale stays above 0.3
            of the family's output std); the network mean is mapped into its space.
        adapt_steps: inner steps of the adaptation (default: the prior's `adapt_steps`).
        seed: seeds the adaptation's minibatch order.
        covar_module: override the kernel (the modes keep their means).

    Example:
        >>> model = MetaPriorModel(X, Y, prior=prior, mode="both")
        >>> fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    """

    def __init__(self, train_X: Tensor, train_Y: Tensor, prior: MetaPrior, mode: str = "mean",
                 train_Yvar: Tensor | None = None,
                 input_transform: InputTransform | _DefaultType | None = DEFAULT,
                 outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
                 adapt_steps: int | None = None, covar_module: Kernel | None = None,
                 likelihood=None, seed: int = 0) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES} (got {mode!r})")
        train_X, train_Y = check_training_data("MetaPriorModel", prior, train_X, train_Y, train_Yvar)
        self.prior = prior
        self.mode = mode
        if input_transform == DEFAULT:
            input_transform = Normalize(d=prior.dim, bounds=prior.bounds.to(train_X))
        if outcome_transform == DEFAULT:
            outcome_transform = FloorStandardize(RESIDUAL_FLOOR * prior.y_std)
        if mode == "weighted":
            # The meta-init as it is: the fitted weight then measures the prior's agreement
            # with the data. An adapted copy has been fitted to these very points, so its
            # weight stayed near 1 on tasks unlike the family (measured on Branin).
            self.adapted_prior = prior
            warn_far_from_family(train_Y, prior.y_mean, prior.y_std)  # adapt warns in the others
            network = FrozenNetwork(prior)
        else:
            self.adapted_prior = prior.adapt(train_X, train_Y, steps=adapt_steps, seed=seed)
            network = FrozenNetwork(self.adapted_prior)
        if mode == "kernel":
            mean_module = ConstantMean()
        elif mode == "weighted":
            mean_module = WeightedNetworkMean(network)
        else:
            mean_module = NetworkMean(network)
        if covar_module is None:
            if mode in ("mean", "weighted"):
                covar_module = residual_kernel(prior.dim)
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

    def posterior(self, X: Tensor, *args, **kwargs):
        """`SingleTaskGP.posterior` at `X` (`batch_shape x q x d`, original units), after
        checking that `X` is finite and has the prior's dimension."""
        check_query(X, self.prior.dim, bounds=self.prior.bounds)
        return super().posterior(X, *args, **kwargs)

    @property
    def prior_trust(self) -> float:
        """How far the model follows the prior, in [0, 1]: the fitted weight in mode
        "weighted" (clipped), 1 in the other modes, whose trust is fixed."""
        if isinstance(self.mean_module, WeightedNetworkMean):
            return float(self.mean_module.weight.detach().clamp(0, 1))
        return 1.0

    @property
    def network(self) -> FrozenNetwork:
        """The frozen (adapted) network."""
        for m in self.modules():
            if isinstance(m, FrozenNetwork):
                return m
        raise AttributeError("no network")  # unreachable: every mode holds one
