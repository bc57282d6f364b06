"""Property tests: whatever the input, the public entry points return a result or raise one of
`metaprior.errors` (a `MetaPriorError`), never a raw torch, BoTorch or Python error.

Inputs vary in shape (0-3 dimensions, empty, wrong width), dtype (float16/32/64, bfloat16, int,
bool, complex), values (NaN, +-inf, +-1e308, 0) and type (lists, numpy arrays, strings, None,
dicts). Examples are bounded (`max_examples`, no deadline) so that the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings

import numpy as np
import pytest
import torch
from helpers import random_prior

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from metaprior.config import ReptileConfig  # noqa: E402
from metaprior.errors import MetaPriorError  # noqa: E402
from metaprior.gp.evidence import fit_gp  # noqa: E402
from metaprior.gp.model import MODES, MetaPriorModel  # noqa: E402
from metaprior.optim import Optimizer  # noqa: E402

DIM = 2
# METAPRIOR_PROPERTY_EXAMPLES=1000 searches deeper (random, not the fixed default sequence).
EXAMPLES = int(os.environ.get("METAPRIOR_PROPERTY_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES == 25, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIAL = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 1e-300]
values = st.one_of(st.sampled_from(SPECIAL), st.floats(-10.0, 10.0, allow_nan=False))
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool,
          torch.complex64]


@st.composite
def tensors(draw, width: int = DIM) -> torch.Tensor:
    """A tensor of 0-3 dimensions whose last dimension is usually `width`."""
    ndim = draw(st.integers(0, 3))
    shape = [draw(st.integers(0, 4)) for _ in range(ndim)]
    if ndim and draw(st.booleans()):
        shape[-1] = width
    n = math.prod(shape)
    data = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.float64)
    dtype = draw(st.sampled_from(DTYPES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casting NaN or 1e308 to int or half warns
        return data.reshape(shape).to(dtype)


@st.composite
def inputs(draw, width: int = DIM):
    """Array-likes and type slips: tensors, numpy arrays, nested lists, scalars, strings..."""
    kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "numpy", "list", "scalar",
                                 "string", "none", "dict", "strings"]))
    if kind in ("tensor", "numpy", "list"):
        t = draw(tensors(width))
        if kind == "tensor":
            return t
        t = t.to(torch.complex128 if t.is_complex() else torch.float64)
        return t.numpy() if kind == "numpy" else t.tolist()
    if kind == "scalar":
        return draw(st.one_of(values, st.integers(-5, 5), st.booleans()))
    if kind == "string":
        return draw(st.sampled_from(["0.5", "abc", ""]))
    if kind == "strings":
        return [["0.1x"] * width]
    return None if kind == "none" else {"x": 1.0}


@st.composite
def observations(draw, width: int = DIM):
    """`(X, Y)`: half the time a nearly valid pair (`n x width` and `n` or `n x 1`, mostly finite
    values, the same container for both) that sometimes carries one slip; else unrelated
    `inputs()`. Unrelated draws alone would almost never get past the shape checks."""
    if draw(st.booleans()):
        return draw(inputs(width)), draw(inputs(1))
    n = draw(st.integers(0, 5))
    x_values, y_values = st.floats(-0.5, 1.5), st.floats(-1e3, 1e3)
    if draw(st.booleans()):  # else every value is finite and near the box
        x_values = st.one_of(x_values, st.sampled_from(SPECIAL))
        y_values = st.one_of(y_values, st.sampled_from(SPECIAL))
    X = torch.tensor(draw(st.lists(x_values, min_size=n * width, max_size=n * width)),
                     dtype=torch.float64).reshape(n, width)
    y = draw(st.lists(y_values, min_size=n, max_size=n))
    Y = torch.tensor(y, dtype=torch.float64)
    if draw(st.booleans()):
        Y = Y.unsqueeze(-1)
    slip = draw(st.sampled_from(["none", "none", "dtype", "numpy", "list", "transpose",
                                 "extra_row", "strings", "complex"]))
    if slip == "dtype":
        dtype = draw(st.sampled_from(DTYPES))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X, Y = X.to(dtype), Y.to(dtype)
    elif slip in ("numpy", "list"):
        X, Y = (X.numpy(), Y.numpy()) if slip == "numpy" else (X.tolist(), Y.tolist())
    elif slip == "transpose":
        X = X.T
    elif slip == "extra_row":
        Y = torch.cat([Y, Y[:1]]) if n else torch.zeros(1)
    elif slip == "strings":
        Y = [str(v) for v in y]
    elif slip == "complex":
        Y = Y.to(torch.complex128) * (1 + 1j)
    return X, Y


def call(fn, *args, **kwargs):
    """`fn(...)` with warnings silenced: the result, or None after a `MetaPriorError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except MetaPriorError:
            return None


@pytest.fixture(scope="module")
def prior():
    return random_prior(DIM, hidden=(8,))


@SETTINGS
@given(data=observations())
def test_tell_stores_or_raises_typed_errors(data):
    """A tell is recorded whole or refused whole, and what it records a GP can use."""
    X, y = data
    opt = Optimizer(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), seed=0, n_init=1,
                    num_restarts=2, raw_samples=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            opt.tell(X, y)
        except MetaPriorError:
            assert len(opt.history) == 0
            return
    assert opt.train_X.shape[0] == opt.train_Y.shape[0] == len(opt.history)
    assert torch.isfinite(opt.train_X).all() and torch.isfinite(opt.train_Y).all()
    assert opt.train_X.dtype == opt.train_Y.dtype == torch.float64
    if len(opt.history):  # the next ask fits uninformed BO's GP to what was told
        assert torch.isfinite(call(opt.ask)).all()


@SETTINGS
@given(data=observations(), mode=st.sampled_from(MODES))
def test_meta_prior_model_builds_or_raises_typed_errors(prior, data, mode):
    X, Y = data
    model = call(MetaPriorModel, X, Y, prior, mode=mode, adapt_steps=2)
    if model is None:
        return
    assert isinstance(model, MetaPriorModel)
    fit_gp(model)
    with torch.no_grad():
        posterior = model.posterior(torch.rand(3, DIM, dtype=torch.float64))
    assert posterior.mean.shape == (3, 1)
    assert torch.isfinite(posterior.mean).all() and torch.isfinite(posterior.variance).all()


steps = st.one_of(st.none(), st.integers(0, 3), st.integers(-3, 3), st.floats(-1, 3),
                  st.sampled_from(["2", True]))


@SETTINGS
@given(data=observations(), steps=steps, seed=st.one_of(st.integers(-3, 3), st.integers(-3, 3), st.just("0")))
def test_adapt_and_predict_return_or_raise_typed_errors(prior, data, steps, seed):
    X, Y = data
    adapted = call(prior.adapt, X, Y, steps=steps, seed=seed)
    if adapted is not None:
        assert all(torch.isfinite(p).all() for p in adapted.params)
    out = call(prior.predict, X)
    if out is not None:
        assert out.shape[-1] == 1 and out.shape[:-1] == torch.as_tensor(X).shape[:-1]


config_values = st.one_of(
    st.integers(-2, 100), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.none(), st.text(max_size=4), st.sampled_from(["sgd", "adam", "nesterov", (8, 8), [4], ()]),
    st.builds(np.int64, st.integers(-2, 100)), st.builds(np.float64, st.floats(-1, 10)),
)


@SETTINGS
@given(changes=st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(ReptileConfig)]),
                               config_values, max_size=4))
def test_reptile_config_is_valid_or_a_config_error(changes):
    config = call(ReptileConfig, **changes)
    if config is not None:
        assert isinstance(config, ReptileConfig)
        assert ReptileConfig.from_dict(config.to_dict()) == config
