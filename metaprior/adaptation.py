"""The inner loop: k minibatch steps on B tasks at once, the same at meta-training and test time.

Minibatches follow epochs: each epoch draws a fresh random order of every task's points and
walks it m points at a time, so a task with n <= m points takes full-batch steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metaprior.nets import Params, loss_and_grad

ADAM_BETAS = (0.0, 0.999)  # beta1 = 0, as in the Reptile paper's inner Adam
ADAM_EPS = 1e-8


def n_epochs(steps: int, n_points: int, batch_size: int) -> int:
    """Epochs needed for `steps` minibatches of `batch_size` from `n_points` points."""
    per_epoch = max(1, math.ceil(n_points / batch_size))
    return math.ceil(steps / per_epoch)


def order_keys(epochs: int, n_tasks: int, n_points: int, generator: torch.Generator) -> Tensor:
    """Random sort keys, `epochs x B x n`, that fix every task's point order in every epoch.

    Drawn for the whole meta-batch up front so that a shard of tasks (one rank, one chunk)
    sees exactly the order that the unsharded run gives it.
    """
    return torch.rand(epochs, n_tasks, n_points, generator=generator, device=generator.device)


def adapt_batched(params: Params, X: Tensor, Y: Tensor, mask: Tensor, keys: Tensor, steps: int,
                  batch_size: int, lr: float, optimizer: str = "sgd",
                  max_grad_norm: float = 10.0) -> tuple[Params, Tensor]:
    """Adapt B stacked networks to their tasks' points.

    Args:
        params: stacked weights (leading dimension B); not modified.
        X: `B x n x d` inputs in the unit cube.
        Y: `B x n` normalised targets.
        mask: `B x n` bool, True for real points.
        keys: `epochs x B x n` sort keys from `order_keys`.
        steps: number of minibatch steps.
        batch_size: points per minibatch.
        lr: step size.
        optimizer: "sgd" or "adam".
        max_grad_norm: each task's gradient is clipped to this norm.

    Returns:
        The adapted stacked weights and the `B` full-data losses before adaptation.
    """
    B, n = Y.shape
    per_epoch = max(1, math.ceil(n / batch_size))
    maskf = mask.to(X.dtype)
    full_w = maskf / maskf.sum(-1, keepdim=True).clamp(min=1)
    loss0, _ = loss_and_grad(params, X, Y, full_w)
    phi = [p.clone() for p in params]
    moments = [torch.zeros_like(p) for p in phi] if optimizer == "adam" else None
    # Padding sorts last so that every minibatch holds real points first.
    order = None
    for step in range(steps):
        epoch, j = divmod(step, per_epoch)
        if j == 0:
            k = keys[epoch].masked_fill(~mask, float("inf"))
            order = k.argsort(dim=-1)
        idx = order[:, j * batch_size:(j + 1) * batch_size]
        xb = X.gather(1, idx.unsqueeze(-1).expand(-1, -1, X.shape[-1]))
        yb = Y.gather(1, idx)
        wb = maskf.gather(1, idx)
        wb = wb / wb.sum(-1, keepdim=True).clamp(min=1)
        _, grads = loss_and_grad(phi, xb, yb, wb)
        norm = torch.sqrt(sum(g.flatten(1).square().sum(-1) for g in grads))
        scale = (max_grad_norm / (norm + 1e-12)).clamp(max=1.0)
        if moments is None:
            step_size = (lr * scale).nan_to_num(0.0)
            new = [p - step_size.view(-1, *[1] * (p.ndim - 1)) * g for p, g in zip(phi, grads,
                                                                                   strict=True)]
        else:
            b2 = ADAM_BETAS[1]
            new = []
            for i, (p, g) in enumerate(zip(phi, grads, strict=True)):
                g = g * scale.view(-1, *[1] * (g.ndim - 1))
                moments[i] = b2 * moments[i] + (1 - b2) * g.square()
                v_hat = moments[i] / (1 - b2 ** (step + 1))
                new.append(p - lr * g / (v_hat.sqrt() + ADAM_EPS))
        # A task whose step went non-finite keeps its last finite weights.
        finite = torch.stack([q.flatten(1).isfinite().all(-1) for q in new]).all(0)
        phi = [torch.where(finite.view(-1, *[1] * (q.ndim - 1)), q, p)
               for q, p in zip(new, phi, strict=True)]
    return phi, loss0
