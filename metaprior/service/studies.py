"""What the service does to a study: rebuild its optimizer from the store, then ask, tell, add.

Requests are stateless: every ask rebuilds the study's `Optimizer` from the trials in the store
(the optimizer refits its model at every ask anyway), under the study's lock in the database,
so that any server process can serve any request and concurrent asks see each other's pending
points. Values of a study that maximises are negated on their way into the optimizer, which
minimises.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

from metaprior.errors import ConfigError, InputDataError, MetaPriorError, PriorFileError
from metaprior.optim import Optimizer, check_space_names
from metaprior.prior import MetaPrior
from metaprior.service.blobs import prior_from_bytes
from metaprior.service.db import Family, Store, Study, Trial
from metaprior.service.errors import InvalidRequestError, NotFoundError
from metaprior.space import Int, SearchSpace
from metaprior.validation import MAX_OUTPUT_MAGNITUDE

log = logging.getLogger("metaprior.service")

# Columns of the client's trial and history DataFrames; a parameter may not take these names.
RESERVED_NAMES = ("trial", "value", "state")
DIRECTIONS = ("minimize", "maximize")
# Decoded prior versions kept per process: versions never change, so a cache is never stale.
PRIOR_CACHE_SIZE = 16
MAX_EXACT_INT = 2**53
MAX_FLOAT_INT = int(sys.float_info.max)


# ---- spaces and priors --------------------------------------------------------------------
def read_space(space: dict) -> SearchSpace:
    """The `SearchSpace` of a JSON document; `InvalidRequestError` naming what is wrong."""
    check_float_sized(space, "space")
    try:
        parsed = SearchSpace.from_dict(space)
        check_space_names(parsed)
    except (MetaPriorError, ValueError, TypeError, KeyError) as e:
        raise InvalidRequestError(f"space: {e}") from None
    for p in parsed.parameters:
        check_range(p)
    clash = [n for n in parsed.names if n in RESERVED_NAMES]
    if clash:
        raise InvalidRequestError(f"space: parameter names {clash} are columns of the service's "
                                  f"trial tables {list(RESERVED_NAMES)}; rename them")
    return parsed


def check_float_sized(value, where: str) -> None:
    """Refuse an integer too large for a float anywhere in a JSON document (JSON numbers have no
    size limit, and the space's encoder would overflow on it); `InvalidRequestError` naming
    where it is, the first in document order. A loop, not recursion: the document may nest as
    deep as the parser allows."""
    todo = [(value, where)]
    while todo:
        v, at = todo.pop()
        if isinstance(v, dict):
            todo.extend(reversed([(item, f"{at}.{k}") for k, item in v.items()]))
        elif isinstance(v, list):
            todo.extend(reversed([(item, f"{at}[{i}]") for i, item in enumerate(v)]))
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_FLOAT_INT:
            # Not printed whole: it may have thousands of digits.
            raise InvalidRequestError(f"{at} is an integer of about "
                                      f"{int(v.bit_length() * math.log10(2)) + 1} digits, too "
                                      f"large for a float")


def check_range(param) -> None:
    """Refuse a range the optimizer cannot propose in: a width beyond a float's (every point
    would decode to inf or NaN) or integer bounds beyond the 2**53 that a float holds exactly
    (proposals are decoded through floats to int64); else every ask of its studies would fail."""
    lower, upper = getattr(param, "lower", None), getattr(param, "upper", None)
    if lower is None or upper is None:
        return  # a categorical parameter
    if not math.isfinite(float(upper) - float(lower)):
        raise InvalidRequestError(f"space: parameter {param.name!r}: the range [{lower!r}, "
                                  f"{upper!r}] is wider than a float holds; rescale it")
    if isinstance(param, Int) and max(abs(lower), abs(upper)) > MAX_EXACT_INT:
        raise InvalidRequestError(f"space: Int {param.name!r}: bounds [{lower}, {upper}] must lie "
                                  f"within +-2**53 (integers a float holds exactly)")


def check_prior(data: bytes, family: Family) -> MetaPrior:
    """The prior in `data` if it fits `family`'s space; else `InvalidRequestError`."""
    try:
        prior = prior_from_bytes(data)
    except PriorFileError as e:
        raise InvalidRequestError(f"not a valid prior file: {str(e).split(': ', 1)[-1]}") from None
    diff = SearchSpace.from_dict(family.space).difference(prior.space)
    if diff is not None:
        raise InvalidRequestError(f"the prior's space differs from family {family.name!r}'s "
                                  f"('here' is the family's): {diff}")
    return prior


class PriorCache:
    """Decoded priors by (store URL, family, version), least recently used first out."""

    def __init__(self, size: int = PRIOR_CACHE_SIZE):
        self._items: OrderedDict[tuple, MetaPrior] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, store: Store, family: str, version: int) -> MetaPrior:
        key = (store.url, family, version)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        _, data = store.get_prior(family, version)
        prior = prior_from_bytes(data)
        with self._lock:
            self._items[key] = prior
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return prior


PRIORS = PriorCache()


# ---- optimizer options --------------------------------------------------------------------
def check_options(space: SearchSpace, prior: MetaPrior | None, options: dict) -> dict:
    """`options` (Optimizer keyword arguments: mode, n_init, num_restarts, raw_samples,
    trust_region) if an Optimizer accepts them; else `InvalidRequestError`."""
    try:
        Optimizer(space, prior=prior, seed=0, **options)
    except (ConfigError, InputDataError) as e:
        raise InvalidRequestError(f"options: {e}") from None
    return options


def json_value(v):
    """A raw value as a JSON scalar (numpy's scalars to Python's)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---- the rebuilt optimizer ----------------------------------------------------------------
def rebuild_optimizer(space: SearchSpace, prior: MetaPrior | None, seed: int, options: dict,
                      trials: list[Trial], sign: float) -> Optimizer:
    """An `Optimizer` rebuilt from a study's trials: told values replayed (times `sign`, so
    that it minimises), pending points pending, and the Sobol sequence moved past the points
    earlier asks drew. Those asks were made by other requests, maybe other processes: only the
    store remembers them."""
    opt = Optimizer(space, prior=prior, seed=seed, **options)
    done = [t for t in trials if t.state == "complete"]
    if done:
        opt.tell(pd.DataFrame([t.params for t in done], columns=space.names),
                 [sign * t.value for t in done])
    pending = [t for t in trials if t.state == "pending"]
    if pending:
        opt.add_pending([t.params for t in pending])
    # Abandoned Sobol points count too: they were drawn, and proposing them again would repeat.
    opt.skip_sobol(sum(t.source == "sobol" for t in trials))
    return opt


def ask_with_sources(opt: Optimizer, n: int, trials: list[Trial]) -> tuple[pd.DataFrame, list[str]]:
    """`opt.ask(n)` and where each point came from ("prior", "sobol", "bo"), which the store
    keeps so that a later rebuild knows how far the Sobol sequence has gone."""
    # The prior's zero-shot point comes first when nothing is told or pending; the rest of that
    # batch is Sobol points. Otherwise the optimizer fits a model only when it proposes by BO.
    first_is_prior = opt.prior is not None and not any(
        t.state in ("complete", "pending") for t in trials)
    df = opt.ask(n)
    if first_is_prior:
        return df, ["prior"] + ["sobol"] * (n - 1)
    return df, ["sobol" if opt.model is None else "bo"] * n


def sobol_batch(space: SearchSpace, seed: int, trials: list[Trial], n: int) -> pd.DataFrame:
    """The next `n` points of the study's Sobol sequence, raw values: a plain optimizer with
    nothing told proposes from the sequence that the study's optimizer draws from (it depends
    on the seed and the space only)."""
    opt = Optimizer(space, seed=seed)
    opt.skip_sobol(sum(t.source == "sobol" for t in trials))
    return opt.ask(n)


def records(df: pd.DataFrame, names: list[str]) -> list[dict]:
    return [{k: json_value(r[k]) for k in names} for r in df.to_dict("records")]


def sign_of(direction: str) -> float:
    return -1.0 if direction == "maximize" else 1.0


class StudyService:
    """The service's operations on studies, over one `Store`."""

    def __init__(self, store: Store, priors: PriorCache = PRIORS):
        self.store, self.priors = store, priors

    def prior_of(self, study: Study) -> MetaPrior | None:
        if study.prior_version is None:
            return None
        return self.priors.get(self.store, study.family, study.prior_version)

    def ask(self, name: str, n: int) -> list[Trial]:
        """`n` new pending trials of study `name`, proposed with every pending trial in view."""
        # What never changes (the study's settings, its family, its prior version) is read
        # before the lock: inside it, a second connection per ask could wait on a pool that the
        # asks queued on the lock have emptied, each waiting on the other.
        study = self.store.get_study(name)
        family = self.store.get_family(study.family)
        space = SearchSpace.from_dict(family.space)
        prior = self.prior_of(study)
        with self.store.locked_study(name) as lock:
            if study.pending_timeout is not None:
                lock.abandon_older_than(study.pending_timeout)
            trials = lock.trials()
            opt = rebuild_optimizer(space, prior, study.seed, study.options, trials,
                                    sign_of(family.direction))
            try:
                df, sources = ask_with_sources(opt, n, trials)
            except MetaPriorError:
                raise
            except Exception as e:  # noqa: BLE001 - a numerical failure must not fail the study
                # A GP fit or acquisition that fails on some data (a linear-algebra error deep
                # in BoTorch) would otherwise fail every later ask of this study too.
                log.warning("study %r: the model failed (%s: %s); proposing Sobol points",
                            name, type(e).__name__, e)
                df, sources = sobol_batch(space, study.seed, trials, n), ["sobol"] * n
            return lock.add_trials(records(df, space.names), sources)

    def tell(self, name: str, results: list[tuple[int, float]]) -> list[Trial]:
        check_values([v for _, v in results], "value")
        return self.store.tell(name, results)

    def add(self, name: str, params: list[dict], values: list[float]) -> list[Trial]:
        """Record evaluations made elsewhere (complete trials)."""
        if len(params) != len(values):
            raise InvalidRequestError(f"values must hold one value per row of params: params has "
                                      f"{len(params)} rows, values {len(values)}")
        check_values(values, "values")
        study = self.store.get_study(name)
        space = SearchSpace.from_dict(self.store.get_family(study.family).space)
        check_float_sized(params, "params")
        try:
            space.to_model(params)
        except (InputDataError, ConfigError) as e:
            raise InvalidRequestError(f"params: {e}") from None
        clean = [{k: json_value(p[k]) for k in space.names} for p in params]
        with self.store.locked_study(name) as lock:
            return lock.add_trials(clean, "added", list(values))

    def best(self, name: str) -> Trial:
        study = self.store.get_study(name)
        sign = sign_of(self.store.get_family(study.family).direction)
        done = [t for t in self.store.list_trials(name) if t.state == "complete"]
        if not done:
            raise NotFoundError(f"study {name!r} has no complete trial yet")
        return min(done, key=lambda t: sign * t.value)


def check_values(values: list[float], field: str) -> None:
    """Values the optimizer can model: finite and below `MAX_OUTPUT_MAGNITUDE`; else
    `InvalidRequestError` naming the position. Checked before they are stored, because a stored
    value the optimizer refuses would fail every later ask of the study."""
    for i, v in enumerate(values):
        if not math.isfinite(v) or abs(v) > MAX_OUTPUT_MAGNITUDE:
            raise InvalidRequestError(f"{field}[{i}] is {v!r}: values must be finite and at most "
                                      f"{MAX_OUTPUT_MAGNITUDE:g} in magnitude; rescale them")

