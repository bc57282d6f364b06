"""Ask/tell Bayesian optimisation (minimisation) that starts from a meta-learned prior.

With a prior, the first point is the prior's zero-shot minimiser and later points maximise
qLogNEI under `TrustedPriorModel` (or a fixed `MetaPriorModel` mode). Without one it is plain
BO: a scrambled Sobol design, then `SingleTaskGP` + qLogNEI.

Over a typed `SearchSpace` the optimiser works in the space's model coordinates
(`SearchSpace.model_bounds`: the encoded unit cube, or the raw box of a space of linear floats)
and speaks raw values: `ask` returns a DataFrame, `tell` takes one. Every proposed point is
projected onto the space (integers rounded in raw space, one-hot blocks set to their arg-max
level) before it is returned, so the point evaluated is the point the model sees. The
acquisition sees that projection too: categorical levels are enumerated with
`optimize_acqf_mixed` when there are at most `MAX_ENUMERATED_LEVELS` combinations, and the
acquisition is evaluated at projected points, with straight-through gradients.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import pandas as pd
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.optim import optimize_acqf, optimize_acqf_mixed
from torch import Tensor
from torch.quasirandom import SobolEngine

from metaprior.acquisition import DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES, propose
from metaprior.errors import ConfigError, InputDataError
from metaprior.gp.evidence import fit_gp
from metaprior.gp.model import MODES as PRIOR_MODES
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.gp.trusted import PRIOR_PROBABILITY, TrustedPriorModel
from metaprior.prior import MetaPrior
from metaprior.space import Categorical, SearchSpace, box_from_unit
from metaprior.tasks.family import stream_seed, validate_bounds
from metaprior.typed_acquisition import (
    ProjectedAcquisition,
    one_hot_combinations,
    trial_records,
)
from metaprior.validation import (
    as_tensor,
    check_int,
    check_magnitude,
    check_within_reach,
    check_X,
    warn_out_of_bounds,
)
from metaprior.zero_shot import prior_minimizer

# A told point is the asked one when it lies within this fraction of the bounds' width of it in
# every coordinate: asked points come back rounded (3 decimals), through float32 or through JSON,
# and a point that close is the same experiment for any GP fitted to the box.
ASK_MATCH_TOLERANCE = 1e-3
# A proposal within this fraction of the bounds' width of an observed or pending point, in every
# coordinate, repeats it. A prior that is sure of one point (often a corner) asks it again and
# again: the repeat is predicted perfectly, so the scores keep trusting the prior and nothing new
# is learnt. On a Branin task translated far outside the family's range, the default asked the
# corner (-5, 0) at 48 of 50 steps, stuck at a regret of 0.07 with `prior_trust` 1 (benchmark
# v3, harm block). Such a step takes uninformed BO's proposal instead.
REPEAT_TOLERANCE = 1e-6


def default_n_init(dim: int) -> int:
    """Sobol points before the first GP of uninformed BO: d + 1, between 2 and 8."""
    return max(2, min(dim + 1, 8))


MODES = ("trusted", *PRIOR_MODES, "shift")
# Start each step's GP fits from the previous step's (the trusted default only).
WARM_START_FIT = True
HISTORY_COLUMNS = ("iteration", "y", "best", "source", "asked", "seconds", "prior_trust")


class Optimizer:
    """Minimise a black-box function by ask/tell, starting from a prior.

    Args:
        bounds: a `SearchSpace`, or a `2 x d` box in original units (unnamed floats: `ask`
            and `best` give tensors). With a space, `ask` returns a DataFrame of raw values
            (one row per point, columns `space.names`), `tell` takes a DataFrame or a list of
            dicts of raw values (columns other than the parameters, such as a "trial" or a
            "value" column, are ignored), `best` is `(dict of raw values, float)` and
            `history` has one column per parameter.
        prior: a `MetaPrior` for this family, or None for plain (uninformed) BO. With a
            space, the prior's space must be the same (`ConfigError` naming the parameter
            that differs).
        seed: seeds the Sobol design, the model (adaptation, sampler) and the acquisition
            optimiser; equal seeds, equal runs.
        mode: how the prior enters the GP. "trusted" (default): `TrustedPriorModel`, whose
            first points follow the shift ensemble (the prior's own design), and which then
            weighs the prior's GPs by how well they predicted the observations and falls back
            to uninformed BO's GP where they did not. Fixed degrees of
            trust: "mean", "weighted", "kernel", "both" (`MetaPriorModel`'s modes) or "shift"
            (`ShiftEnsembleModel`).
        n_init: Sobol points before the first GP of uninformed BO (default d + 1).
        num_restarts, raw_samples: `optimize_acqf` settings (defaults: `metaprior.acquisition`'s).
        adapt_steps: inner steps when adapting the prior (default: the prior's).
        trust_region: restrict each BO step's acquisition search to a box around the incumbent
            whose side is this fraction of the bounds' width, as a fixed-size TuRBO (Eriksson et
            al., 2019). None (default) searches the whole box.

    Example:
        >>> opt = Optimizer(bounds, prior=prior, seed=0)
        >>> for _ in range(10):
        ...     X = opt.ask()
        ...     opt.tell(X, f(X))
        >>> x_best, y_best = opt.best
        >>> opt.prior_trust  # how far the data so far trust the prior

        Over a typed space:

        >>> opt = Optimizer(prior.space, prior=prior, seed=0)
        >>> trials = opt.ask()                     # DataFrame of raw values
        >>> opt.tell(trials, [train(**row) for row in trials.to_dict("records")])
    """

    # Extra keyword arguments of mode "trusted"'s `TrustedPriorModel`: a subclass's hook for
    # ablations (the benchmark's "metaprior-two-gp" sets with_shift=False),
    # kept out of the constructor's public signature.
    trusted_options: dict = {}

    def __init__(self, bounds, prior: MetaPrior | None = None, *, seed: int = 0,
                 mode: str = "trusted", n_init: int | None = None,
                 num_restarts: int = DEFAULT_NUM_RESTARTS, raw_samples: int = DEFAULT_RAW_SAMPLES,
                 adapt_steps: int | None = None,
                 trust_region: float | None = None):
        self.space = bounds if isinstance(bounds, SearchSpace) else None
        self.bounds = validate_bounds(bounds if self.space is None else self.space.model_bounds)
        d = self.dim
        if prior is not None and not isinstance(prior, MetaPrior):
            raise ConfigError(f"prior must be a MetaPrior or None (got {type(prior).__name__})")
        if self.space is not None:
            check_space_names(self.space)
            if prior is not None and (diff := self.space.difference(prior.space)) is not None:
                raise ConfigError(f"this study's space differs from the space of prior "
                                  f"{prior.family!r} ('here' is the study's): {diff}")
        if prior is not None and prior.dim != d:
            raise InputDataError(f"prior was built for dimension {prior.dim}, bounds have {d}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES} (got {mode!r})")
        self.prior, self.mode = prior, mode
        self.seed = check_int(seed, "seed", minimum=-(2**63))
        self.n_init = default_n_init(d) if n_init is None else check_int(n_init, "n_init", 1)
        self.num_restarts = check_int(num_restarts, "num_restarts", 1)
        self.raw_samples = check_int(raw_samples, "raw_samples", 1)
        if self.raw_samples < self.num_restarts:  # BoTorch picks the restarts among the samples
            raise ConfigError(f"raw_samples ({raw_samples}) must be >= num_restarts ({num_restarts})")
        self.adapt_steps = None if adapt_steps is None else check_int(adapt_steps, "adapt_steps", 0)
        if trust_region is not None and (isinstance(trust_region, bool)
                                         or not isinstance(trust_region, numbers.Real)
                                         or not 0 < trust_region <= 1):
            raise ConfigError(f"trust_region must be in (0, 1] or None (got {trust_region!r})")
        self.trust_region = trust_region
        self._sobol = SobolEngine(d, scramble=True, seed=stream_seed(self.seed, "sobol") % 2**31)
        self._X = torch.empty(0, d, dtype=torch.float64)
        self._Y = torch.empty(0, 1, dtype=torch.float64)
        self._pending: list[tuple[Tensor, str, float, float]] = []
        self._rows: list[dict] = []
        self._raw: list[dict] = []  # with a space: the raw values of each told point
        self.model = None
        self._trust = self._initial_trust()

    @property
    def dim(self) -> int:
        return self.bounds.shape[-1]

    def _initial_trust(self) -> float:
        if self.prior is None:
            return 0.0
        return PRIOR_PROBABILITY if self.mode == "trusted" else 1.0

    @property
    def prior_trust(self) -> float:
        """How far the data so far trust the prior, in [0, 1].

        Mode "trusted": the weight of the prior's GPs in the model average times the
        probability that the task's embedding is one of the family's
        (`TrustedPriorModel.family_probability`; before any observation, the prior
        probability); mode "weighted": the fitted weight of
        the network in the mean; the other modes trust the prior fully (1); no prior: 0.
        """
        return self._trust

    # ---- ask ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> Tensor | pd.DataFrame:
        """The next `n` points to evaluate.

        Returns:
            With bounds: an `n x d` tensor in original units. With a space: a DataFrame of raw
            values, one row per point and one column per parameter (`space.names`).
        """
        n = check_int(n, "n", 1)
        t0 = time.perf_counter()
        X, source = self._propose(n)
        X = self._project(X)
        seconds = (time.perf_counter() - t0) / n
        for x in X:
            self._pending.append((x.clone(), source, seconds, self._trust))
        return X if self.space is None else self.space.from_model(X)

    def add_pending(self, X) -> None:
        """Mark points as pending: asked elsewhere (another process, a scheduler such as Ax's)
        and not yet told. The acquisition avoids them as it avoids this optimizer's own asks,
        and a later `tell` of the same point is matched to them.

        Args:
            X: with bounds, `k x d` (or `d`) points in original units; with a space, raw values
                (a DataFrame, a list of dicts or one dict).
        """
        if self.space is not None:
            X = self.space.to_model(trial_records(self.space, X))
        X = as_tensor(X, "X").to(torch.float64)
        X = check_X(X.unsqueeze(0) if X.ndim == 1 else X, self.dim, "X", allow_batch=False)
        self._pending.extend((x.clone(), "external", 0.0, self._trust) for x in X)

    def skip_sobol(self, n: int) -> None:
        """Move the initial design's Sobol sequence past `n` points: the points that asks made
        elsewhere drew (an optimizer rebuilt from a store, where other processes asked), so that
        the next Sobol point is a new one rather than one already proposed."""
        n = check_int(n, "n", 0)
        if n:
            self._sobol.fast_forward(n)

    def _project(self, X: Tensor) -> Tensor:
        """`n x D` model coordinates -> the model coordinates of the valid points they decode to
        (integers rounded, levels chosen): what is evaluated is exactly what the model sees."""
        if self.space is None or self.space.is_box:
            return X
        return self.space.to_model(self.space.from_model(X))

    def _n_seen(self) -> int:
        return self._X.shape[0] + len(self._pending)

    def _propose(self, n: int) -> tuple[Tensor, str]:
        if self._n_seen() == 0 and self.prior is not None:
            first = self.zero_shot_point().unsqueeze(0)
            rest = self._sobol_points(n - 1) if n > 1 else first[:0]
            return torch.cat([first, rest]), "prior"
        if self.prior is None and (self._X.shape[0] < self.n_init or self._X.shape[0] == 0):
            return self._sobol_points(n), "sobol"
        if self._X.shape[0] == 0:  # prior's first point still pending: nothing to adapt to yet
            return self._sobol_points(n), "sobol"
        self.model = self._fit_model(one_point=n == 1 and not self._pending)
        self._trust = float(getattr(self.model, "prior_trust", self._trust))
        X = self._bo_points(n)
        if isinstance(self.model, TrustedPriorModel) and self._repeats(X):
            return self._bo_points(n, self.model.uninformed), "uninformed"
        return X, "bo"

    def _repeats(self, X: Tensor) -> bool:
        """Whether a point of `X` (`n x D`, as the model will see it) repeats an observed point,
        a pending one or another point of `X` (within `REPEAT_TOLERANCE` of the bounds'
        width in every coordinate)."""
        X = self._project(X)
        seen = torch.cat([self._X, *(p[0].unsqueeze(0) for p in self._pending)])
        return any(float(self._gaps(earlier, x).min()) <= REPEAT_TOLERANCE
                   for i, x in enumerate(X) if len(earlier := torch.cat([seen, X[:i]])))

    def _gaps(self, points: Tensor, x: Tensor) -> Tensor:
        """`k`: each of `points` (`k x D`)'s largest distance to `x` (`D`) over the coordinates,
        as a fraction of the bounds' width."""
        return ((points - x).abs() / (self.bounds[1] - self.bounds[0])).amax(-1)

    def zero_shot_point(self) -> Tensor:
        """The prior's zero-shot minimiser, a `d` tensor in original units."""
        return prior_minimizer(self.prior, self.bounds, seed=self.seed)

    def _sobol_points(self, n: int) -> Tensor:
        return box_from_unit(self._sobol.draw(n, dtype=torch.float64), self.bounds)

    def build_model(self, one_point: bool = True):
        """The model of all observations so far, unfitted for `MetaPriorModel` and
        `SingleTaskGP`; `TrustedPriorModel` fits itself (it needs the fits to weigh the GPs).

        `one_point`: the model is for one point with none pending; otherwise the trusted
        model skips the prior's design (`TrustedPriorModel(prior_design=False)`).
        """
        if self.prior is None:
            return SingleTaskGP(self._X, self._Y,
                                input_transform=Normalize(d=self.dim, bounds=self.bounds))
        if self.mode == "trusted":
            previous = self.model if isinstance(self.model, TrustedPriorModel) else None
            starts = previous.fitted_hyperparameters() if WARM_START_FIT and previous else None
            return TrustedPriorModel(self._X, self._Y, self.prior, bounds=self.bounds,
                                     adapt_steps=self.adapt_steps, seed=self.seed,
                                     fit_starts=starts, prior_design=one_point,
                                     shift_retired=previous is not None
                                     and previous.left_occams_window,
                                     **self.trusted_options)
        if self.mode == "shift":
            return ShiftEnsembleModel(self._X, self._Y, self.prior, seed=self.seed)
        return MetaPriorModel(self._X, self._Y, self.prior, mode=self.mode,
                              adapt_steps=self.adapt_steps, seed=self.seed)

    def _fit_model(self, one_point: bool = True):
        with torch.random.fork_rng():
            torch.manual_seed(self._step_seed())
            model = self.build_model(one_point)
            if not isinstance(model, TrustedPriorModel):
                fit_gp(model)
        return model

    def _step_seed(self) -> int:
        return stream_seed(self.seed, "bo", self._n_seen()) % 2**31

    def search_bounds(self) -> Tensor:
        """`2 x d` box searched by the acquisition: the bounds, or the trust region in them
        (one-hot columns of a typed space always span [0, 1]: a level is not a distance)."""
        if self.trust_region is None:
            return self.bounds
        lo, hi = self.bounds
        center = self._X[self._Y[:, 0].argmin()]
        half = (hi - lo) * self.trust_region / 2
        box = torch.stack([torch.maximum(lo, center - half), torch.minimum(hi, center + half)])
        if self.space is not None:
            start = 0
            for p in self.space.parameters:
                if isinstance(p, Categorical):
                    box[:, start:start + p.width] = self.bounds[:, start:start + p.width]
                start += p.width
        return box

    def _bo_points(self, n: int, model=None) -> Tensor:
        """`n x D` points maximising the shared acquisition (`metaprior.acquisition`) under
        `model` (default: `self.model`), given the pending asks."""
        pending = torch.stack([p[0] for p in self._pending]) if self._pending else None
        typed = None if self.space is None or self.space.is_box else self._typed_acqf_optimum
        return propose(self.model if model is None else model, self._X, self.search_bounds(),
                       n, self._step_seed(), X_pending=pending, num_restarts=self.num_restarts,
                       raw_samples=self.raw_samples, maximize=typed)

    def _typed_acqf_optimum(self, acqf: AcquisitionFunction, settings: dict) -> Tensor:
        """Maximise `acqf` over the valid points of a typed space: `n x D` model coordinates."""
        projected = ProjectedAcquisition(acqf, self.space)
        # A projected acquisition is piecewise constant along integer and level columns, where
        # L-BFGS's line search may stop early; a retry from new starts would find the same.
        combos = one_hot_combinations(self.space)
        if combos is None:
            X, _ = optimize_acqf(projected, retry_on_optimization_warning=False, **settings)
        else:
            X, _ = optimize_acqf_mixed(projected, fixed_features_list=combos,
                                       retry_on_optimization_warning=False, **settings)
        return X

    # ---- tell --------------------------------------------------------------------------
    def tell(self, X, y) -> None:
        """Record evaluations.

        Args:
            X: with bounds, `q x d` (or `d`) points in original units. With a space, raw values:
                a DataFrame with a column per parameter (other columns are ignored, so the
                DataFrame of `ask` may come back with a "value" column added), a list of dicts
                or one dict.
            y: `q`, `q x 1` (or a scalar) values, one per point, in the order of the rows.
        """
        raw = None
        if self.space is not None:
            raw = trial_records(self.space, X)
            X = self.space.to_model(raw)
        X = as_tensor(X, "X").to(torch.float64)
        if X.ndim == 1:
            X = X.unsqueeze(0)
        X = check_X(X, self.dim, "X", allow_batch=False)
        if isinstance(y, (pd.Series, pd.DataFrame)):
            y = y.to_numpy().copy()  # pandas may hand out a read-only view
        y = as_tensor(y, "y").to(torch.float64)
        if y.ndim == 2 and y.shape[-1] == 1:
            y = y[:, 0]
        y = y.reshape(-1) if y.ndim == 0 else y
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise InputDataError(
                f"y must hold one value per row of X: X has {X.shape[0]} rows, y has shape "
                f"{tuple(y.shape)}"
            )
        if not torch.isfinite(y).all():
            i = int((~torch.isfinite(y)).nonzero()[0])
            raise InputDataError(f"y has NaN or inf at position {i}: {y[i].item()}")
        check_within_reach(X, self.bounds, "X")
        check_magnitude(y, "y")
        warn_out_of_bounds(X, self.bounds, "X told")
        for k, (x, v) in enumerate(zip(X, y, strict=True)):
            source, seconds, asked, trust = "external", 0.0, False, self._trust
            i = self._match_pending(x)
            if i is not None:
                _, source, seconds, trust = self._pending.pop(i)
                asked = True
            self._X = torch.cat([self._X, x.unsqueeze(0)])
            self._Y = torch.cat([self._Y, v.view(1, 1)])
            best = float(self._Y.min())
            row = {"iteration": len(self._rows) + 1}
            if raw is None:
                row.update({f"x{j}": float(x[j]) for j in range(self.dim)})
            else:
                self._raw.append(raw[k])
                row.update(raw[k])
            row.update({"y": float(v), "best": best, "source": source, "asked": asked,
                        "seconds": seconds, "prior_trust": trust})
            self._rows.append(row)

    def _match_pending(self, x: Tensor) -> int | None:
        """Index of the pending ask nearest to `x` (`d`), if one lies within
        `ASK_MATCH_TOLERANCE` of the bounds' width of it in every coordinate; else None."""
        if not self._pending:
            return None
        gaps = self._gaps(torch.stack([p[0] for p in self._pending]), x)
        i = int(gaps.argmin())
        return i if gaps[i] <= ASK_MATCH_TOLERANCE else None

    # ---- results -----------------------------------------------------------------------
    @property
    def best(self) -> tuple[Tensor | dict, float]:
        """`(x, y)` of the lowest observation: x is a `d` tensor, or with a space a dict of raw
        values (as told)."""
        if self._Y.shape[0] == 0:
            raise InputDataError("no observations yet: call tell() first")
        i = int(self._Y[:, 0].argmin())
        x = self._X[i].clone() if self.space is None else dict(self._raw[i])
        return x, float(self._Y[i, 0])

    @property
    def history(self) -> pd.DataFrame:
        """One row per evaluation: iteration, x0..x{d-1} (with a space: one column of raw
        values per parameter), y, best, source, asked, seconds, prior_trust (the trust of the
        model that proposed the point).

        source: "prior" (the zero-shot point), "sobol", "bo", "uninformed" (the default's
        proposal would have repeated a point, so uninformed BO's GP proposed it instead;
        `REPEAT_TOLERANCE`), or "external" (told without an ask)."""
        names = [f"x{j}" for j in range(self.dim)] if self.space is None else self.space.names
        cols = ["iteration", *names, "y", "best", "source", "asked", "seconds", "prior_trust"]
        return pd.DataFrame(self._rows, columns=cols)

    @property
    def pending(self) -> Tensor | pd.DataFrame:
        """Points asked and not yet told (the acquisition treats them as pending): `k x d`, or
        with a space a DataFrame of raw values."""
        if not self._pending:
            X = torch.empty(0, self.dim, dtype=torch.float64)
        else:
            X = torch.stack([p[0] for p in self._pending])
        return X if self.space is None else self.space.from_model(X)

    @property
    def train_X(self) -> Tensor:
        """The told points in the model's coordinates, `n x D` (with a space: `space.to_model`)."""
        return self._X.clone()

    @property
    def train_Y(self) -> Tensor:
        return self._Y.clone()


@dataclass
class OptimizeResult:
    """What `minimize` returns: the best point `x` (a `d` tensor, or with a space a dict of raw
    values), its value `fun`, the `history`."""

    x: Tensor | dict
    fun: float
    history: pd.DataFrame
    optimizer: Optimizer


def minimize(fn, bounds, budget: int = 30, prior: MetaPrior | None = None, seed: int = 0,
             batch_size: int = 1, **optimizer_kwargs) -> OptimizeResult:
    """Minimise `fn` over `bounds` (a box or a `SearchSpace`) in `budget` evaluations.

    Args:
        fn: maps a `q x d` tensor (original units) to `q` (or `q x 1`) values; with a space,
            a DataFrame of raw values (one row per point) to `q` values.
        bounds: a `2 x d` box, or a `SearchSpace`.
        budget: total evaluations.
        prior: a `MetaPrior`, or None for uninformed BO.
        seed: random seed.
        batch_size: points per ask.
        optimizer_kwargs: passed to `Optimizer` (mode, num_restarts, ...).
    """
    budget = check_int(budget, "budget", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    opt = Optimizer(bounds, prior=prior, seed=seed, **optimizer_kwargs)
    while opt.train_X.shape[0] < budget:
        X = opt.ask(min(batch_size, budget - opt.train_X.shape[0]))
        opt.tell(X, fn(X))
    x, fun = opt.best
    return OptimizeResult(x=x, fun=fun, history=opt.history, optimizer=opt)


def check_space_names(space: SearchSpace) -> None:
    """`ConfigError` for a parameter whose name is a column of `Optimizer.history`."""
    clash = [n for n in space.names if n in HISTORY_COLUMNS]
    if clash:
        raise ConfigError(f"parameter names {clash} clash with the history's columns "
                          f"{list(HISTORY_COLUMNS)}; rename them")
