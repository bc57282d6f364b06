"""MetaPrior: prediction, adaptation without mutation, save/load, input checks."""

from __future__ import annotations

import doctest
import warnings

import pytest
import torch

import metaprior.output_scale
from metaprior.errors import ConfigError, InputDataError, OutOfBoundsWarning
from metaprior.output_scale import OutputScale
from metaprior.prior import MetaPrior


def grid(n: int = 9) -> torch.Tensor:
    return torch.linspace(-4, 4, n, dtype=torch.float64).unsqueeze(-1)


def test_predict_and_feature_shapes(tiny_prior):
    assert tiny_prior.predict(grid(9)).shape == (9, 1)
    assert tiny_prior.predict(grid(9).expand(3, 9, 1)).shape == (3, 9, 1)
    assert tiny_prior.predict(grid(9).expand(2, 3, 9, 1)).shape == (2, 3, 9, 1)
    assert tiny_prior.features(grid(5)).shape == (5, 32)
    assert tiny_prior.predict(grid(9)).dtype == torch.float64
    assert tiny_prior.predict(grid(9).float()).dtype == torch.float32
    # Batched prediction equals prediction of each batch member.
    Xb = torch.rand(4, 6, 1, dtype=torch.float64) * 8 - 4
    pb = tiny_prior.predict(Xb)
    for i in range(4):
        torch.testing.assert_close(pb[i], tiny_prior.predict(Xb[i]))


def test_predict_is_in_original_units(tiny_prior):
    """The net's normalised output is mapped back with the stored family statistics."""
    X = grid(7)
    U = (X + 4) / 8
    z = tiny_prior.net(U)
    torch.testing.assert_close(tiny_prior.predict(X)[:, 0], z * tiny_prior.y_std
                               + tiny_prior.y_mean)


def test_prior_maps_inputs_through_its_space_and_outputs_through_its_scale(tiny_prior):
    """The prior re-derives neither map: its unit cube is its space's encoding, to the bit, and
    its output statistics are its `OutputScale`."""
    X = grid(7)
    assert torch.equal(tiny_prior.to_unit(X), tiny_prior.space.encode(X))
    scale = tiny_prior.output_scale
    assert (tiny_prior.y_mean, tiny_prior.y_std) == (scale.mean, scale.std)
    Y = torch.linspace(-3.0, 9.0, 5, dtype=torch.float64)
    assert torch.equal(tiny_prior.normalize_y(Y), scale.normalize(Y))
    torch.testing.assert_close(tiny_prior.unnormalize_y(tiny_prior.normalize_y(Y)), Y)
    assert tiny_prior.header()["y_mean"] == scale.mean and tiny_prior.header()["y_std"] == scale.std


def test_output_scale_checks_its_values_and_inverts():
    assert doctest.testmod(metaprior.output_scale).failed == 0
    scale = OutputScale(3, 0.5)
    assert (scale.mean, scale.std) == (3.0, 0.5) and isinstance(scale.mean, float)
    Z = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scale.normalize(scale.unnormalize(Z)), Z)
    for mean, std, needle in [(0.0, 0.0, "y_std"), (float("nan"), 1.0, "y_mean")]:
        with pytest.raises(ConfigError, match=needle):
            OutputScale(mean, std)


def test_adapt_returns_a_copy_and_leaves_the_prior_alone(logistic_prior):
    before = [p.clone() for p in logistic_prior.params]
    stats = dict(logistic_prior.stats)
    X = torch.tensor([[-3.0], [-1.0], [0.5], [2.0], [3.5]], dtype=torch.float64)
    Y = 8.0 / (1 + torch.exp(-3.0 * (X - 0.2)))
    adapted = logistic_prior.adapt(X, Y)
    assert isinstance(adapted, MetaPrior) and adapted is not logistic_prior
    assert all(torch.equal(p, q) for p, q in zip(before, logistic_prior.params, strict=True))
    assert logistic_prior.stats == stats and logistic_prior.n_adapted == 0
    assert adapted.n_adapted == 5
    assert not all(torch.equal(p, q) for p, q in zip(before, adapted.params, strict=True))
    # The adapted copy's weights are its own: changing them leaves the prior unchanged.
    adapted.params[0].add_(1.0)
    assert torch.equal(before[0], logistic_prior.params[0])
    # Adaptation pulls predictions at the observations towards them.
    fresh = logistic_prior.adapt(X, Y)
    err_before = (logistic_prior.predict(X) - Y).square().mean()
    err_after = (fresh.predict(X) - Y).square().mean()
    assert err_after < err_before


def test_adapt_is_deterministic_and_seeded(logistic_prior):
    X = torch.tensor([[-2.0], [0.0], [1.0]], dtype=torch.float64)
    Y = torch.tensor([[0.5], [4.0], [7.0]], dtype=torch.float64)
    a, b = logistic_prior.adapt(X, Y), logistic_prior.adapt(X, Y)
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))
    c = logistic_prior.adapt(X, Y, steps=0)
    assert all(torch.equal(p, q) for p, q in zip(c.params, logistic_prior.params, strict=True))


def test_adapt_on_one_point_stays_finite(logistic_prior):
    for y in (0.0, 5.0, 1e4, -1e4):
        X = torch.tensor([[0.3]], dtype=torch.float64)
        Y = torch.tensor([[y]], dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither an adaptation nor a bounds warning
            # ... except that +-1e4 lies thousands of family stds away, which adapt reports
            warnings.filterwarnings("ignore", message="the observations do not look like")
            adapted = logistic_prior.adapt(X, Y, steps=200)
        assert all(torch.isfinite(p).all() for p in adapted.params)
        assert torch.isfinite(adapted.predict(grid(50))).all()
    X = torch.tensor([[0.3]], dtype=torch.float64)
    moderate = logistic_prior.adapt(X, torch.tensor([[9.0]]), steps=200)
    assert abs(float(moderate.predict(X)) - 9.0) < abs(float(logistic_prior.predict(X)) - 9.0)


def test_adapt_with_no_points_is_the_prior(tiny_prior):
    out = tiny_prior.adapt(torch.zeros(0, 1), torch.zeros(0, 1))
    assert out.n_adapted == 0
    assert all(torch.equal(p, q) for p, q in zip(out.params, tiny_prior.params, strict=True))


def test_save_load_roundtrip_is_exact(logistic_prior, tmp_path):
    X = torch.tensor([[-1.0], [2.0]], dtype=torch.float64)
    adapted = logistic_prior.adapt(X, torch.tensor([[1.0], [6.0]]))
    for prior in (logistic_prior, adapted):
        path = tmp_path / "p.prior"
        prior.save(path)
        loaded = MetaPrior.load(path)
        assert all(torch.equal(p, q) for p, q in zip(prior.params, loaded.params, strict=True))
        assert torch.equal(loaded.bounds, prior.bounds)
        assert (loaded.y_mean, loaded.y_std) == (prior.y_mean, prior.y_std)
        assert loaded.config == prior.config
        assert loaded.family == prior.family == "logistic"
        assert loaded.stats == prior.stats
        assert loaded.n_adapted == prior.n_adapted
        assert torch.equal(loaded.predict(grid(33)), prior.predict(grid(33)))
    # Saving over an existing file leaves no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.prior"]


def test_wrong_dimension_of_X(tiny_prior):
    with pytest.raises(InputDataError, match=r"1 columns \(got 2\)"):
        tiny_prior.predict(torch.zeros(4, 2))
    with pytest.raises(InputDataError, match=r"\(4,\)"):
        tiny_prior.predict(torch.zeros(4))
    with pytest.raises(InputDataError, match=r"1 columns \(got 3\)"):
        tiny_prior.adapt(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(InputDataError, match=r"\(2, 3, 1\)"):
        tiny_prior.adapt(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))


def test_non_finite_inputs(tiny_prior):
    X = torch.tensor([[0.0], [1.0], [2.0]])
    with pytest.raises(InputDataError, match=r"row 1: nan"):
        tiny_prior.adapt(X, torch.tensor([[0.0], [float("nan")], [1.0]]))
    with pytest.raises(InputDataError, match="inf"):
        tiny_prior.adapt(X, torch.tensor([0.0, 1.0, float("inf")]))
    with pytest.raises(InputDataError, match="NaN"):
        tiny_prior.predict(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(InputDataError, match=r"3 x 1 \(got \(2, 1\)\)"):
        tiny_prior.adapt(X, torch.zeros(2, 1))


def test_out_of_bounds_warns(tiny_prior):
    X = torch.tensor([[0.0], [5.5]], dtype=torch.float64)
    with pytest.warns(OutOfBoundsWarning, match="5.5"):
        out = tiny_prior.predict(X)
    assert torch.isfinite(out).all()
    with pytest.warns(OutOfBoundsWarning, match="-7.0"):
        tiny_prior.adapt(torch.tensor([[-7.0]]), torch.tensor([[1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_prior.predict(torch.tensor([[-4.0], [4.0]]))  # the boundary itself is inside


def test_constructor_checks_layer_sizes(tiny_prior):
    with pytest.raises(InputDataError, match="layer sizes"):
        MetaPrior(tiny_prior.params[2:], tiny_prior.bounds, 0.0, 1.0, tiny_prior.config)


def test_constructor_checks_every_weight_shape_and_value(tiny_prior):
    p, b, cfg = tiny_prior.params, tiny_prior.bounds, tiny_prior.config
    with pytest.raises(InputDataError, match="shapes"):  # no last bias: predict used to IndexError
        MetaPrior(p[:-1], b, 0.0, 1.0, cfg)
    with pytest.raises(InputDataError, match="shapes"):
        MetaPrior([p[0].T, *p[1:]], b, 0.0, 1.0, cfg)
    nan = [q.clone() for q in p]
    nan[1][0] = float("nan")
    with pytest.raises(InputDataError, match="weight 1.*NaN or inf"):
        MetaPrior(nan, b, 0.0, 1.0, cfg)


@pytest.mark.parametrize(("y_mean", "y_std", "needle"), [
    (0.0, 0.0, "y_std"), (0.0, -1.0, "y_std"), (0.0, float("nan"), "y_std"),
    (0.0, float("inf"), "y_std"), (float("inf"), 1.0, "y_mean"), (float("nan"), 1.0, "y_mean"),
])
def test_constructor_checks_output_statistics(tiny_prior, y_mean, y_std, needle):
    from metaprior.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        MetaPrior(tiny_prior.params, tiny_prior.bounds, y_mean, y_std, tiny_prior.config)


def test_constructor_checks_n_adapted_and_config(tiny_prior):
    from metaprior.errors import ConfigError

    args = (tiny_prior.params, tiny_prior.bounds, 0.0, 1.0)
    with pytest.raises(ConfigError, match="n_adapted"):
        MetaPrior(*args, tiny_prior.config, n_adapted=-2)
    with pytest.raises(ConfigError, match="ReptileConfig"):
        MetaPrior(*args, tiny_prior.config.to_dict())
