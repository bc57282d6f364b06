"""Few-shot evaluation on held-out tasks (fixing the seed's two bugs).

For each K the network adapts on K support points and is scored on a disjoint query set, so the
score measures generalisation, not memorisation. Three models are compared: the meta-init
adapted, a random init adapted with the same steps, and the meta-init unadapted.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch

from metaprior.adaptation import adapt_batched, n_epochs, order_keys
from metaprior.errors import ConfigError, InputDataError
from metaprior.nets import forward, init_params, stack
from metaprior.prior import MetaPrior
from metaprior.tasks.family import TaskFamily, make_generator

METHODS = ("meta_adapted", "random_adapted", "meta_unadapted")


def evaluate_few_shot(prior: MetaPrior, family: TaskFamily, shots: Iterable[int] = range(1, 11),
                      n_tasks: int = 32, seed: int = 1, n_query: int = 100,
                      steps: int | None = None) -> pd.DataFrame:
    """Held-out few-shot MSE, in units of the family's output variance.

    Args:
        prior: the meta-trained prior.
        family: its family; tasks come from its held-out split (a separate random stream for
            parametric families, the test tasks of a table).
        shots: the support-set sizes K.
        n_tasks: held-out tasks per K.
        seed: seeds the held-out stream (never used by meta-training).
        n_query: query points per task, disjoint from the support points.
        steps: adaptation steps (default `prior.config.adapt_steps`).

    Returns:
        A DataFrame with columns `shots, method, mse, mse_se, n_tasks`: mse is the mean over
        tasks of each task's query MSE divided by the family-level output variance.
    """
    shots = sorted({int(k) for k in shots})
    if not shots or shots[0] < 1:
        raise ConfigError(f"shots must be positive integers (got {shots})")
    if family.dim != prior.dim:
        raise InputDataError(f"prior has dim {prior.dim}, family {family.name} has {family.dim}")
    cfg = prior.config
    steps = cfg.adapt_steps if steps is None else int(steps)
    n_points = shots[-1] + n_query
    batch = family.sample(n_tasks, n_points, make_generator(seed, "few-shot", family.name), "test")
    dtype = prior.params[0].dtype
    X = prior.to_unit(batch.X).to(dtype)
    Y = prior.normalize_y(batch.Y.double()).to(dtype)
    mask = batch.mask
    random_init = init_params(prior.dim, cfg.hidden, make_generator(seed, "random-init"), dtype)
    inits = {"meta": stack(prior.params, n_tasks), "random": stack(random_init, n_tasks)}
    rows = []
    for k in shots:
        support = mask.clone()
        support[:, k:] = False
        query = mask.clone()
        query[:, :k] = False
        if not (mask[:, :k].all() and query.any(-1).all()):
            raise InputDataError(f"held-out tasks of {family.name} have too few points for K={k}")
        g = make_generator(seed, "few-shot-adapt", k)
        keys = order_keys(n_epochs(steps, n_points, cfg.inner_batch_size), n_tasks, n_points, g)
        fitted = {"meta_unadapted": inits["meta"]}
        for name in ("meta", "random"):
            fitted[f"{name}_adapted"], _ = adapt_batched(
                inits[name], X, Y, support, keys, steps, cfg.inner_batch_size, cfg.inner_lr,
                cfg.inner_optimizer, cfg.max_grad_norm)
        qf = query.to(dtype)
        for method in METHODS:
            with torch.no_grad():
                err = (forward(fitted[method], X) - Y).square()
            mse = (err * qf).sum(-1) / qf.sum(-1)
            rows.append({"shots": k, "method": method, "mse": float(mse.mean()),
                         "mse_se": float(mse.std() / n_tasks**0.5), "n_tasks": n_tasks})
    return pd.DataFrame(rows)


def few_shot_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wide view: one row per K, one column per method (mean query MSE)."""
    return df.pivot(index="shots", columns="method", values="mse")[list(METHODS)]
