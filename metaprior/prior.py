"""`MetaPrior`: a meta-trained network plus everything needed to use it on a new task.

It holds the network's weights, the input box (inputs are mapped to the unit cube), the
family-level output statistics (outputs are standardised with them), the config and training
statistics. `adapt` returns an adapted copy; nothing ever mutates a prior in place.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor

from metaprior.adaptation import adapt_batched, n_epochs, order_keys
from metaprior.config import ReptileConfig
from metaprior.errors import AdaptationWarning, ConfigError, InputDataError, PriorFileError
from metaprior.nets import Params, forward, layer_sizes, stack
from metaprior.output_scale import OutputScale
from metaprior.priorfile import (
    FORMAT_VERSION,
    as_float_tensor,
    check_header,
    check_tensor_names,
    read_prior_file,
    write_prior_file,
)
from metaprior.shift_prior import LEGACY_STATS_KEY, ShiftPrior
from metaprior.space import SearchSpace
from metaprior.tasks.family import make_generator, validate_bounds
from metaprior.validation import check_int, check_X, check_Y, warn_far_from_family, warn_out_of_bounds


def check_space(space: SearchSpace | None, bounds: Tensor) -> SearchSpace:
    """The prior's space: `space`, or the unnamed-float space of `bounds` when None.

    The network's inputs are the space's model coordinates (`SearchSpace.model_bounds`): the raw
    box for a space of linear floats, the encoded unit cube otherwise; `bounds` must be exactly
    that box, else `ConfigError` naming both.
    """
    if space is None:
        return SearchSpace.from_bounds(bounds)
    if not isinstance(space, SearchSpace):
        raise ConfigError(f"space must be a SearchSpace or None (got {type(space).__name__})")
    expected = space.model_bounds
    if expected.shape != bounds.shape or not torch.equal(expected, bounds.to(torch.float64)):
        what = "its raw box" if space.is_box else f"the unit cube of its {space.encoded_dim} encoded columns"
        raise ConfigError(f"bounds {bounds.tolist()} do not match the space: a prior over {space.names} "
                          f"has as bounds {what}, {expected.tolist()}")
    return space


def check_params(params: Params, sizes: list[int]) -> None:
    """Weights `[W_0, b_0, ...]` of exactly the shapes the layer `sizes` imply, all finite;
    else `InputDataError` (a missing bias would otherwise fail only at the first prediction)."""
    expected = [s for a, b in zip(sizes[:-1], sizes[1:], strict=True) for s in ((b, a), (b,))]
    got = [tuple(p.shape) for p in params]
    if got != expected:
        raise InputDataError(f"weights have shapes {got}; layer sizes {sizes} imply {expected}")
    for i, p in enumerate(params):
        if not p.is_floating_point():
            raise InputDataError(f"weight {i} has dtype {p.dtype}, not floating point")
        if not torch.isfinite(p).all():
            n_bad = int((~torch.isfinite(p)).sum())
            raise InputDataError(f"weight {i} (shape {tuple(p.shape)}) has {n_bad} NaN or inf "
                                 f"values")


class MetaPrior:
    """A meta-learned network prior for one task family.

    Args:
        params: the network's weights `[W_0, b_0, ..., W_L, b_L]` (see `metaprior.nets`).
        bounds: `2 x d` box of the family, in original units.
        y_mean: family-level output mean (original units).
        y_std: family-level output standard deviation.
        config: the `ReptileConfig` it was trained with (test-time adaptation reuses it).
        family: the family's name.
        stats: training statistics (JSON-able).
        n_adapted: number of observations this copy was adapted to (0 for a meta-init).
        shift_prior: the meta-learned prior of a task's translation (`ShiftPrior`), which
            `ShiftEnsembleModel` needs; `meta_train` estimates it, None if absent.
        space: the `SearchSpace` of the family's raw values. None: the unnamed floats of
            `bounds` (`SearchSpace.from_bounds`). For a space with integers, log scales or
            categoricals, `bounds` is the unit cube of its encoded columns (`2 x encoded_dim`)
            and the space maps raw values into it (`space.to_model`).

    Attributes:
        output_scale: the `OutputScale` of `y_mean` and `y_std`, the one map between original
            units and the network's standardised outputs (`normalize_y`, `unnormalize_y`).
    """

    def __init__(self, params: Params, bounds, y_mean: float, y_std: float,
                 config: ReptileConfig, family: str = "custom", stats: dict | None = None,
                 n_adapted: int = 0, shift_prior: ShiftPrior | None = None,
                 space: SearchSpace | None = None):
        if not isinstance(config, ReptileConfig):
            raise ConfigError(f"config must be a ReptileConfig (got {type(config).__name__})")
        self.params = [p.detach().clone() for p in params]
        self.bounds = validate_bounds(bounds)
        self.space = check_space(space, self.bounds)
        self.output_scale = OutputScale(y_mean, y_std)
        self.config = config
        self.family = family
        self.stats = dict(stats or {})
        n_adapted = check_int(n_adapted, "n_adapted")
        self.n_adapted = int(n_adapted)
        if shift_prior is not None and not isinstance(shift_prior, ShiftPrior):
            raise ConfigError(f"shift_prior must be a ShiftPrior or None "
                              f"(got {type(shift_prior).__name__})")
        if shift_prior is not None and shift_prior.dim != self.dim:
            raise ConfigError(f"shift_prior has dimension {shift_prior.dim}, the prior {self.dim}")
        self.shift_prior = shift_prior
        check_params(self.params, layer_sizes(self.dim, config.hidden))

    @property
    def dim(self) -> int:
        return self.bounds.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @property
    def y_mean(self) -> float:
        """The family-level output mean (original units), `output_scale.mean`."""
        return self.output_scale.mean

    @property
    def y_std(self) -> float:
        """The family-level output standard deviation, `output_scale.std`."""
        return self.output_scale.std

    # ---- normalisation: the space's input map and the output scale's map ----------------
    def to_unit(self, X: Tensor) -> Tensor:
        """Map `... x n x d` model inputs (original units for a box) to the network's unit cube."""
        return self.space.model_to_unit(X)

    def normalize_y(self, Y: Tensor) -> Tensor:
        """Outputs (any shape, original units) -> the network's standardised outputs."""
        return self.output_scale.normalize(Y)

    def unnormalize_y(self, Z: Tensor) -> Tensor:
        """The network's standardised outputs (any shape) -> original units."""
        return self.output_scale.unnormalize(Z)

    # ---- prediction ----------------------------------------------------------------------
    def net(self, U: Tensor, features: bool = False) -> Tensor:
        """The network on unit-cube inputs `... x n x d`: `... x n` normalised outputs."""
        params = [p.to(device=U.device, dtype=U.dtype) for p in self.params]
        return forward(params, U, features=features)

    def predict(self, X) -> Tensor:
        """Predictions in original units: `... x n x d` inputs -> `... x n x 1`."""
        X = check_X(X, self.dim)
        warn_out_of_bounds(X, self.bounds)
        return self.unnormalize_y(self.net(self.to_unit(X))).unsqueeze(-1)

    def features(self, X) -> Tensor:
        """Last hidden layer: `... x n x d` inputs in original units -> `... x n x h`."""
        X = check_X(X, self.dim)
        return self.net(self.to_unit(X), features=True)

    # ---- adaptation ----------------------------------------------------------------------
    def adapt(self, X, Y, steps: int | None = None, seed: int = 0) -> MetaPrior:
        """A copy adapted to observations `X` (`n x d`, original units) and `Y` (`n x 1`).

        It runs the meta-trained inner loop (same optimiser, step size and minibatch size) for
        `steps` (default `config.adapt_steps`) steps. The prior itself is unchanged.
        """
        X = check_X(X, self.dim, allow_batch=False)
        Y = check_Y(Y, X.shape[0])
        steps = None if steps is None else check_int(steps, "steps", 0)
        seed = check_int(seed, "seed", minimum=-(2**63))
        warn_out_of_bounds(X, self.bounds)
        warn_far_from_family(Y, self.y_mean, self.y_std)
        out = copy.copy(self)
        out.params = [p.clone() for p in self.params]
        out.stats = dict(self.stats)
        n = X.shape[0]
        if n == 0:
            return out
        mask = torch.ones(1, n, dtype=torch.bool)
        phi = [p[0] for p in self._adapt_copies(X, Y, mask, steps, seed)]
        if not all(torch.isfinite(p).all() for p in phi):
            warnings.warn("adaptation went non-finite; keeping the meta-init",
                          AdaptationWarning, stacklevel=2)
            phi = [p.clone() for p in self.params]
        out.params = phi
        out.n_adapted = n
        return out

    def held_out_predictions(self, X, Y, scheme: str = "prequential", steps: int | None = None,
                             seed: int = 0) -> Tensor:
        """Each observation as predicted by copies adapted to other observations only.

        An honest test of the prior: the copy adapted to all the points has seen each of them.
        All copies adapt in one batched call (each masks the points it must not see), so this
        costs about one adaptation of a meta-batch of `n` tasks.

        Known deviation: every copy walks the minibatch slots of an adaptation to all `n`
        points, and a slot holding only masked points changes nothing. With `n` above the
        minibatch size `m`, a copy that keeps `k` points therefore takes about
        `steps * ceil(k / m) / ceil(n / m)` real steps, fewer than `adapt` on those points
        would (the default model's trust, measured in the README, was computed this way).

        Args:
            X: `n x d` observations' inputs, original units, in the order they were made.
            Y: `n x 1` observations.
            scheme: "prequential" (copy i adapted to points 0..i-1, copy 0 is the meta-init:
                each point as predicted before it was made) or "loo" (copy i adapted to all
                points but i).
            steps: inner steps (default `config.adapt_steps`).
            seed: seeds the minibatch order.

        Returns:
            An `n x n` tensor in original units: row i holds copy i's predictions at every
            point of `X` (copy i never saw point i).
        """
        X = check_X(X, self.dim, allow_batch=False)
        Y = check_Y(Y, X.shape[0])
        steps = None if steps is None else check_int(steps, "steps", 0)
        seed = check_int(seed, "seed", minimum=-(2**63))
        n = X.shape[0]
        if n == 0:
            raise InputDataError("held_out_predictions needs at least one observation")
        if scheme == "prequential":
            mask = torch.ones(n, n, dtype=torch.bool).tril(-1)
        elif scheme == "loo":
            mask = ~torch.eye(n, dtype=torch.bool)
        else:
            raise ConfigError(f"scheme must be 'prequential' or 'loo' (got {scheme!r})")
        phi = self._adapt_copies(X, Y, mask, steps, seed)
        U = self.to_unit(X.to(torch.float64)).to(phi[0]).unsqueeze(0).expand(n, -1, -1)
        with torch.no_grad():
            Z = forward(phi, U)
        if not torch.isfinite(Z).all():  # a diverged copy predicts as the meta-init does
            Z = torch.where(torch.isfinite(Z), Z, forward(self.params, U[:1]).expand(n, -1))
        return self.unnormalize_y(Z.to(torch.float64))

    def _adapt_copies(self, X: Tensor, Y: Tensor, mask: Tensor, steps: int | None,
                      seed: int) -> list[Tensor]:
        """Adapt `B` copies of the meta-init to the points of `X` that `mask` (`B x n`) keeps:
        stacked weights, leading dimension B."""
        cfg = self.config
        steps = cfg.adapt_steps if steps is None else int(steps)
        B, n = mask.shape
        dtype, device = self.params[0].dtype, self.device
        U = self.to_unit(X.to(torch.float64)).to(device=device, dtype=dtype)
        Z = self.normalize_y(Y.to(torch.float64)[:, 0]).to(device=device, dtype=dtype)
        U, Z = U.unsqueeze(0).expand(B, -1, -1).contiguous(), Z.unsqueeze(0).expand(B, -1)
        g = make_generator(seed, "adapt", n) if B == 1 else make_generator(seed, "copies", n)
        keys = order_keys(n_epochs(steps, n, cfg.inner_batch_size), B, n, g).to(device)
        phi, _ = adapt_batched(stack(self.params, B), U, Z.contiguous(), mask.to(device), keys,
                               steps, cfg.inner_batch_size, cfg.inner_lr, cfg.inner_optimizer,
                               cfg.max_grad_norm)
        return phi

    def to(self, device) -> MetaPrior:
        out = copy.copy(self)
        out.params = [p.to(device) for p in self.params]
        return out

    # ---- files ---------------------------------------------------------------------------
    def header(self) -> dict:
        return {
            "family": self.family,
            "dim": self.dim,
            "bounds": self.bounds.tolist(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "config": self.config.to_dict(),
            "stats": self.stats,
            "n_adapted": self.n_adapted,
            "shift_prior": None if self.shift_prior is None else self.shift_prior.to_dict(),
            "space": self.space.to_dict(),
            "format_version": FORMAT_VERSION,
        }

    def save(self, path) -> None:
        """Write the prior to `path` (safetensors + JSON header), atomically."""
        tensors = {f"param.{i:03d}": p.float() for i, p in enumerate(self.params)}
        write_prior_file(path, tensors, self.header())

    @classmethod
    def load(cls, path, device=None) -> MetaPrior:
        """Read a prior file; anything but a valid prior raises `PriorFileError`."""
        tensors, h = read_prior_file(path)
        check_header(h, path)
        params = check_tensor_names(tensors, path)
        try:
            config = ReptileConfig.from_dict(h["config"])
            bounds = as_float_tensor(h["bounds"], f"{path}: bounds")
            stats = dict(h.get("stats") or {})
            # files written before the shift prior became a field kept it in the stats
            shift = h.get("shift_prior", stats.pop(LEGACY_STATS_KEY, None))
            prior = cls(params, bounds, float(h["y_mean"]), float(h["y_std"]), config,
                        family=str(h["family"]), stats=stats,
                        n_adapted=int(h.get("n_adapted", 0)),
                        shift_prior=None if shift is None else ShiftPrior.from_dict(shift),
                        space=header_space(h, bounds, path))
        except PriorFileError:
            raise
        except Exception as e:  # missing keys, wrong shapes, invalid config: all a bad file
            raise PriorFileError(f"{path}: inconsistent prior contents ({type(e).__name__}: {e})"
                                 ) from None
        return prior.to(device) if device is not None else prior

    def __repr__(self) -> str:
        return (f"MetaPrior(family={self.family!r}, dim={self.dim}, hidden={self.config.hidden}, "
                f"n_adapted={self.n_adapted})")


def header_space(header: dict, bounds: Tensor, path) -> SearchSpace:
    """The space of a prior file's header; a file written before spaces existed gets the
    unnamed floats of its bounds. A space that cannot be read is a `PriorFileError`."""
    if header.get("space") is None:
        return SearchSpace.from_bounds(bounds)
    try:
        return check_space(SearchSpace.from_dict(header["space"]), bounds)
    except (ConfigError, InputDataError) as e:
        raise PriorFileError(f"{path}: header field space is not a valid search space for this "
                             f"prior ({e})") from None
