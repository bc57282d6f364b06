"""The inner loop: k minibatch steps on B tasks at once, the same at meta-training and test time.

Minibatches follow epochs: each epoch draws a fresh random order of every task's points and
walks it m points at a time, so a task with n <= m points takes full-batch steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metaprior import cpu_kernel
from metaprior.nets import Params, forward, loss_and_grad

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
    maskf = mask.to(X.dtype)
    full_w = maskf / maskf.sum(-1, keepdim=True).clamp(min=1)
    phi = [p.clone() for p in params]
    idx_all, w_all = padded_schedule(keys, mask, steps, batch_size, X.dtype)
    if cpu_kernel.applies(phi, X, batch_size, optimizer):
        loss0 = cpu_kernel.adapt_sgd_(phi, X, Y, full_w, idx_all, w_all, lr, max_grad_norm)
        if loss0 is not None:
            return phi, loss0
    with torch.no_grad():
        loss0 = (full_w * (forward(params, X) - Y).square()).sum(-1)
    moments = [torch.zeros_like(p) for p in phi] if optimizer == "adam" else None
    for step in range(steps):
        idx, wb = idx_all[:, step], w_all[:, step]
        xb = X.gather(1, idx.unsqueeze(-1).expand(-1, -1, X.shape[-1]))
        yb = Y.gather(1, idx)
        _, grads = loss_and_grad(phi, xb, yb, wb)
        norm = torch.sqrt(sum(g.flatten(1).square().sum(-1) for g in grads))
        scale = (max_grad_norm / (norm + 1e-12)).clamp(max=1.0)
        finite = torch.isfinite(norm)
        if not bool(finite.all()):
            # Rare: a task whose gradient overflowed skips this step and keeps its weights.
            scale = torch.where(finite, scale, torch.zeros_like(scale))
            grads = [torch.where(_per_task(finite, g), g, torch.zeros_like(g)) for g in grads]
        if moments is None:
            step_size = lr * scale
            for p, g in zip(phi, grads, strict=True):
                p.addcmul_(g, _per_task(step_size, g), value=-1.0)
        else:
            b2 = ADAM_BETAS[1]
            for p, g, v in zip(phi, grads, moments, strict=True):
                g = g * _per_task(scale, g)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2 ** (step + 1))).sqrt_().add_(ADAM_EPS)
                p.addcdiv_(g, denom, value=-lr)
    return phi, loss0


def padded_schedule(keys: Tensor, mask: Tensor, steps: int, batch_size: int,
                    dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Every step's minibatch: `B x steps x m` point indices and loss weights, m = min(batch, n).

    Epoch e visits every task's points in the order of `keys[e]`, padding last (so every
    minibatch holds real points first), `batch_size` at a time. The weights are the mask over
    the number of real points in the minibatch; the short last minibatch of an epoch is padded
    with weight 0, which adds exact zeros to every sum.
    """
    B, n = mask.shape
    m = min(batch_size, n)
    per_epoch = max(1, math.ceil(n / batch_size))
    epochs = math.ceil(steps / per_epoch)
    order = keys[:epochs].masked_fill(~mask, float("inf")).argsort(dim=-1)  # epochs x B x n
    real = mask.to(dtype).unsqueeze(0).expand(epochs, -1, -1).gather(-1, order)
    pad = per_epoch * m - n
    idx, wts = (torch.nn.functional.pad(t, (0, pad)) for t in (order, real))

    def by_step(t: Tensor) -> Tensor:  # epochs x B x (per_epoch m) -> B x steps x m
        return t.view(epochs, B, per_epoch, m).transpose(0, 1).reshape(B, -1, m)[:, :steps]

    idx, wts = by_step(idx), by_step(wts)
    return idx.contiguous(), (wts / wts.sum(-1, keepdim=True).clamp(min=1)).contiguous()


def _per_task(values: Tensor, like: Tensor) -> Tensor:
    """Reshape `B` per-task values to broadcast against a stacked `B x ...` tensor."""
    return values.view(-1, *[1] * (like.ndim - 1))
