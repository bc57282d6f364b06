"""Built-in and user task families: shapes, batched evaluation, held-out streams, optima."""

from __future__ import annotations

import math

import pytest
import torch

from metaprior.errors import TaskFamilyError
from metaprior.tasks import (
    BUILTIN_FAMILIES,
    Branin,
    Forrester,
    FunctionFamily,
    Hartmann,
    Logistic,
    Sinusoid,
    family_names,
    get_family,
)
from metaprior.tasks.family import make_generator

NAMES = sorted(BUILTIN_FAMILIES)


@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_and_box(name):
    fam = get_family(name)
    batch = fam.sample(5, 7, make_generator(0, "t"))
    assert batch.X.shape == (5, 7, fam.dim)
    assert batch.Y.shape == (5, 7) and batch.mask.shape == (5, 7)
    assert batch.X.dtype == torch.float64 and batch.mask.dtype == torch.bool
    assert batch.mask.all() and len(batch.task_ids) == 5
    assert torch.isfinite(batch.Y).all()
    lo, hi = fam.bounds
    assert (batch.X >= lo).all() and (batch.X <= hi).all()
    assert fam.bounds.shape == (2, fam.dim)


@pytest.mark.parametrize("name", ["logistic", "sinusoid", "forrester"])
def test_grid_sampling_is_a_shared_grid(name):
    fam = get_family(name)
    batch = fam.sample(3, 11, make_generator(0, "t"), grid=True)
    lo, hi = fam.bounds[:, 0].tolist()
    expected = torch.linspace(lo, hi, 11, dtype=torch.float64)
    for i in range(3):
        torch.testing.assert_close(batch.X[i, :, 0], expected)
    # Same points, different tasks: the outputs differ between tasks.
    assert not torch.allclose(batch.Y[0], batch.Y[1])


def test_grid_sampling_needs_1d():
    with pytest.raises(TaskFamilyError, match="dim=2"):
        Branin().sample(2, 4, make_generator(0), grid=True)


@pytest.mark.parametrize("name", NAMES)
def test_batched_evaluation_equals_per_task(name):
    fam = get_family(name)
    g = make_generator(1, "params")
    params = fam.draw_params(4, g)
    X = fam.uniform_points((4, 9), g)
    Y = fam.evaluate(X, params)
    for i in range(4):
        one = fam.evaluate(X[i:i + 1], params[i:i + 1])[0]
        torch.testing.assert_close(Y[i], one, rtol=1e-12, atol=1e-12)
    # A held-out task's callable is the same function on one task.
    tasks = fam.held_out_tasks(3, seed=5)
    held = fam.draw_params(3, make_generator(5, "held-out", fam.name))
    for i, task in enumerate(tasks):
        torch.testing.assert_close(task(X[0]), fam.evaluate(X[:1], held[i:i + 1])[0])


@pytest.mark.parametrize("name", NAMES)
def test_held_out_tasks_differ_from_training_stream(name):
    fam = get_family(name)
    probe = fam.uniform_points((1, 16), make_generator(0, "probe"))[0]
    held = torch.stack([t(probe) for t in fam.held_out_tasks(16, seed=0)])  # 16 x 16
    # The training tasks that meta_train(seed=0) draws in its first outer steps.
    train = torch.cat([
        fam.evaluate(probe.expand(8, -1, -1), fam.draw_params(8, make_generator(0, "step", s)))
        for s in range(20)
    ])
    dist = torch.cdist(held, train)
    assert dist.min() > 1e-6
    # Different seeds give different held-out tasks; equal seeds the same ones.
    other = torch.stack([t(probe) for t in fam.held_out_tasks(16, seed=1)])
    assert torch.cdist(held, other).min() > 1e-6
    again = torch.stack([t(probe) for t in fam.held_out_tasks(16, seed=0)])
    assert torch.equal(held, again)


@pytest.mark.parametrize("name", NAMES)
def test_y_min_bounds_every_value(name):
    fam = get_family(name)
    tasks = fam.held_out_tasks(6, seed=2)
    X = fam.uniform_points((2000,), make_generator(3, "probe"))
    for task in tasks:
        y = task(X)
        assert y.shape == (2000,)
        assert (y >= task.y_min - 1e-9).all(), (task.name, float(y.min()), task.y_min)
        assert task.y_max >= task.y_min
        assert task.name.startswith(fam.name)


# (family, a minimiser of the untranslated base function)
OPTIMA = [
    (Branin(), [math.pi, 2.275], 0.397887),
    (Branin(), [-math.pi, 12.275], 0.397887),
    (Forrester(), [0.757249], -6.020740),
    (Hartmann(3), [0.114614, 0.555649, 0.852547], -3.86278),
    (Hartmann(6), [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573], -3.32237),
]


@pytest.mark.parametrize(("fam", "x_star", "f_star"), OPTIMA, ids=lambda v: str(v)[:20])
def test_translated_scaled_optimum(fam, x_star, f_star):
    d = fam.dim
    params = fam.draw_params(8, make_generator(0, "opt"))
    t, s = params[:, :d], params[:, d]
    torch.testing.assert_close(fam.optimum(params), s * f_star)
    width = fam.bounds[1] - fam.bounds[0]
    x = (torch.tensor(x_star, dtype=torch.float64) + t * width).unsqueeze(1)  # 8 x 1 x d
    assert ((x >= fam.bounds[0]) & (x <= fam.bounds[1])).all()
    value = fam.evaluate(x, params)[:, 0]
    torch.testing.assert_close(value, s * f_star, rtol=0, atol=2e-5 * abs(f_star) + 1e-5)
    # Nothing in the box is lower than the known optimum.
    X = fam.uniform_points((8, 4000), make_generator(1, "dense"))
    assert (fam.evaluate(X, params).min(-1).values >= s * f_star - 1e-4).all()


def test_branin_held_out_y_min_is_the_scaled_optimum():
    fam = Branin()
    tasks = fam.held_out_tasks(5, seed=7)
    s = fam.draw_params(5, make_generator(7, "held-out", fam.name))[:, 2]
    for task, si in zip(tasks, s.tolist(), strict=True):
        assert task.y_min == pytest.approx(si * 0.397887, rel=1e-6)


def test_logistic_and_sinusoid_optima():
    log, sin = Logistic(), Sinusoid()
    p = log.draw_params(6, make_generator(0))
    x = torch.full((6, 1, 1), -4.0, dtype=torch.float64)
    torch.testing.assert_close(log.evaluate(x, p)[:, 0], log.optimum(p))
    grid = log.grid_points(6, 200)
    assert (log.evaluate(grid, p).min(-1).values >= log.optimum(p) - 1e-12).all()
    q = sin.draw_params(6, make_generator(0))
    x = (q[:, 1] - math.pi / 2).view(6, 1, 1)  # A sin(x - phase) is lowest at phase - pi/2
    torch.testing.assert_close(sin.evaluate(x, q)[:, 0], sin.optimum(q))


def _shifted_family(**kwargs) -> FunctionFamily:
    return FunctionFamily(
        lambda X, p: ((X - p.unsqueeze(-2)) ** 2).sum(-1),
        torch.tensor([[-1.0, -1.0], [1.0, 1.0]]),
        lambda n, g: torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5,
        **kwargs,
    )


def test_function_family_user_family():
    fam = _shifted_family(name="shifted")
    assert fam.dim == 2 and fam.name == "shifted" and fam.bounds.dtype == torch.float64
    batch = fam.sample(4, 6, make_generator(0))
    assert batch.X.shape == (4, 6, 2) and batch.Y.shape == (4, 6)
    # each task's outputs are its own bowl: lowest near the task's centre, within the box
    centres = batch.X.gather(1, batch.Y.argmin(1).view(4, 1, 1).expand(4, 1, 2))[:, 0]
    assert (centres.abs() <= 1.0).all() and batch.Y.std(1).min() > 0
    tasks = fam.held_out_tasks(3, seed=0)
    assert len(tasks) == 3
    # No known optimum: y_min comes from dense sampling, close to the true minimum 0.
    for task in tasks:
        assert 0 <= task.y_min < 0.01
    # Same seed, same tasks.
    g1, g2 = make_generator(4), make_generator(4)
    assert torch.equal(fam.sample(3, 5, g1).Y, fam.sample(3, 5, g2).Y)


def test_function_family_known_optimum_lowers_y_min():
    fam = _shifted_family(optimum=lambda p: torch.full((p.shape[0],), -1.0, dtype=p.dtype))
    assert all(t.y_min == -1.0 for t in fam.held_out_tasks(2))


def test_function_family_wrong_output_shape():
    fam = FunctionFamily(lambda X, p: X.sum(-1, keepdim=True), [[0.0], [1.0]],
                         lambda n, g: torch.rand(n, 1, generator=g), name="broken")
    with pytest.raises(TaskFamilyError, match=r"broken.*\(2, 3, 1\)"):
        fam.sample(2, 3, make_generator(0))


def test_function_family_wrong_param_rows():
    fam = FunctionFamily(lambda X, p: X[..., 0], [[0.0], [1.0]],
                         lambda n, g: torch.rand(n + 1, 1, generator=g))
    with pytest.raises(TaskFamilyError, match="returned 4 rows, expected 3"):
        fam.sample(3, 2, make_generator(0))


@pytest.mark.parametrize(("bounds", "needle"), [
    ([[0.0, 1.0], [1.0, 1.0]], r"lower=\[1\.0\] >= upper=\[1\.0\]"),
    ([[2.0], [-3.0]], r"lower=\[2\.0\] >= upper=\[-3\.0\]"),
    ([[0.0, 0.0, 0.0]], r"\(1, 3\)"),
    ([[0.0], [float("inf")]], "inf"),
])
def test_bad_bounds(bounds, needle):
    with pytest.raises(TaskFamilyError, match=needle):
        FunctionFamily(lambda X, p: X[..., 0], bounds, lambda n, g: torch.zeros(n, 1))


def test_unknown_family_name():
    with pytest.raises(TaskFamilyError, match="'rosenbrock'.*branin.*lcbench.*-typed"):
        get_family("rosenbrock")
    assert get_family("BRANIN").name == "branin"
    with pytest.raises(TaskFamilyError, match="'lcbench-boxed'"):  # only the one suffix
        get_family("lcbench-boxed")


def test_registry_names_every_family_it_builds(monkeypatch):
    names = family_names()
    assert len(set(names)) == len(names)
    assert {"branin", "lcbench", "rbv2_rpart", "lcbench-typed"} <= set(names)
    assert family_names(yahpo=False) == list(BUILTIN_FAMILIES)
    for name in family_names(yahpo=False):
        family = get_family(name)
        assert family.name == name
        # typed=False keeps exactly the families over a box
        assert family.space.is_box == (name in family_names(yahpo=False, typed=False))
    assert family_names(typed=False)[-2:] == ["lcbench", "rbv2_rpart"]
    # The YAHPO names reach the YAHPO families: without a data folder they say how to give one.
    monkeypatch.delenv("METAPRIOR_YAHPO_DATA", raising=False)
    for name in set(names) - set(BUILTIN_FAMILIES):
        with pytest.raises(TaskFamilyError, match="no YAHPO data folder"):
            get_family(name.upper())


def test_bad_sample_arguments():
    fam = Logistic()
    with pytest.raises(TaskFamilyError, match="'valid'"):
        fam.sample(2, 3, make_generator(0), split="valid")
    with pytest.raises(TaskFamilyError, match="got 0"):
        fam.sample(0, 3, make_generator(0))
    with pytest.raises(TaskFamilyError, match="got 0"):
        fam.sample(2, 0, make_generator(0))
    with pytest.raises(TaskFamilyError, match="got 4"):
        Hartmann(4)
