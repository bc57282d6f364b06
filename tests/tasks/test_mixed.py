"""The built-in typed family: valid points only, an exact optimum, its space reaches the prior."""

from __future__ import annotations

import dataclasses

import torch

import metaprior as mp
from metaprior.tasks import MIXED_SPACE, MixedTraining, get_family
from metaprior.tasks.family import make_generator

torch.set_num_threads(1)


def test_points_are_valid_configurations_of_the_space():
    fam = get_family("mixed")
    assert isinstance(fam, MixedTraining) and fam.space == MIXED_SPACE
    X = fam.sample(4, 50, make_generator(0, "t")).X.reshape(-1, MIXED_SPACE.encoded_dim)
    # A valid point survives decode -> encode unchanged (integers on their grid, exact one-hot).
    torch.testing.assert_close(MIXED_SPACE.encode(MIXED_SPACE.decode(X)), X, rtol=0, atol=1e-12)
    levels = MIXED_SPACE.decode(X)["optimizer"]
    assert set(levels) == {"adam", "sgd", "rmsprop"}


def test_the_known_optimum_is_attained_and_never_beaten():
    fam = MixedTraining()
    params = fam.draw_params(6, make_generator(3, "p"))
    optimum = fam.optimum(params)
    for i, p in enumerate(params):
        k = int(p[3:6].argmin())
        best = torch.zeros(1, 6, dtype=torch.float64)
        best[0, 0] = p[0] + (0.0, 0.2, -0.1)[k]
        best[0, 1] = p[1]
        best[0, 2] = torch.round(p[2] * 7) / 7
        best[0, 3 + k] = 1.0
        value = fam.evaluate(best.unsqueeze(0), p.unsqueeze(0))[0, 0]
        torch.testing.assert_close(value, optimum[i])
        dense = fam.uniform_points((1, 4000), make_generator(i, "dense"))
        assert fam.evaluate(dense, p.unsqueeze(0)).min() >= optimum[i] - 1e-12
    tasks = fam.held_out_tasks(3)
    assert all(t.y_min < t.y_max for t in tasks)


def test_meta_training_stores_the_typed_space_and_optimizer_speaks_raw_values():
    fam = MixedTraining()
    cfg = dataclasses.replace(mp.ReptileConfig(), outer_steps=3, tasks_per_step=4)
    prior = mp.meta_train(fam, cfg, seed=0, progress=False)
    assert prior.space == MIXED_SPACE
    opt = mp.Optimizer(fam.space, prior=prior, seed=0, num_restarts=2, raw_samples=16)
    task = fam.held_out_tasks(1)[0]
    for _ in range(3):
        trials = opt.ask()
        opt.tell(trials, task(fam.space.to_model(trials)).tolist())
    best, value = opt.best
    assert set(best) == set(MIXED_SPACE.names) and isinstance(best["layers"], int)
    assert value >= task.y_min
