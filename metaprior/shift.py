"""Task inference by translation: which shift of the prior's network explains a new task.

Many task families differ mainly by where their optimum sits and by the scale of their output:
the same model tuned on another dataset, or an experiment under moved conditions (MetaBO's
families are exactly `s * f(x - t)`). For such families a handful of observations pins down the
shift `t` long before it pins down the network's thousand weights, so instead of fine-tuning
the weights we infer a low-dimensional task embedding:

    f_task(u) ~ a * net(u - t) + b + residual,   u in the unit cube, outputs normalised,

with a prior on `(t, a, b)` and a residual scale meta-learned from the training tasks
(`estimate_shift_prior`), and a posterior over `t` from the observations (`infer_shift`:
importance sampling, then Metropolis-Hastings moves; `a` and `b` are linear and integrate out in
closed form). The particles feed `ShiftEnsembleModel`.

The residual scale is measured where BO evaluates, near a task's minimum, with `(t, a, b)`
refitted there: a shifted network is off by a slowly varying amount (RMS about 0.03 family stds
over all of Branin), which a local `(a, b)` absorbs, leaving about 0.003 near the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metaprior.errors import ConfigError, InputDataError
from metaprior.prior import MetaPrior
from metaprior.shift_prior import ShiftPrior
from metaprior.tasks.family import TaskFamily, make_generator

# The posterior's proposal is the prior widened by this factor (tasks slightly outside the
# training spread stay reachable; importance weights correct for the widening).
PROPOSAL_WIDENING = 1.5
# The local residual is measured on each training task's LOCAL_POINTS points nearest to its
# lowest one (radius about 0.1 of the box in 2-D with 1,000 points).
LOCAL_POINTS = 30
MIN_RESID_SD = 1e-4
SCREEN_POINTS = 200
GLOBAL_POINTS = 200


def _affine_fit(z: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least squares of `y ~ a z + b` along the last dim; returns `a`, `b`."""
    sw = w.sum(-1).clamp(min=1e-12)
    zm, ym = (w * z).sum(-1) / sw, (w * y).sum(-1) / sw
    zc = z - zm.unsqueeze(-1)
    a = (w * zc * (y - ym.unsqueeze(-1))).sum(-1) / (w * zc**2).sum(-1).clamp(min=1e-12)
    return a, ym - a * zm


def _weighted_sse(z: Tensor, y: Tensor, w: Tensor) -> Tensor:
    a, b = _affine_fit(z, y, w)
    return (w * (y - a.unsqueeze(-1) * z - b.unsqueeze(-1)) ** 2).sum(-1)


def fit_shifts(prior: MetaPrior, U: Tensor, y: Tensor, w: Tensor, n_screen: int = 64,
               seed: int = 0, max_iter: int = 50,
               start: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares `(t, a, b)` of `a * net(u - t) + b` for each of B tasks.

    A screen of `n_screen` shifts in `[-0.3, 0.3]^d` (on the first `SCREEN_POINTS` points)
    picks each task's start (the loss has a local minimum wherever one of the network's basins
    meets one of the task's), then L-BFGS polishes all tasks at once: their losses are
    independent, so the sum's optimum is each task's. `a` and `b` are solved in closed form
    inside the loss. Inputs are float64, so the network runs in float64 (`MetaPrior.net`).

    Args:
        prior: the prior whose network is shifted.
        U: `B x n x d` unit-cube inputs.
        y: `B x n` normalised outputs.
        w: `B x n` weights (0 for padding).
        start: `B x d` starting shifts instead of the screen.

    Returns:
        `t` (`B x d`), `a` (`B`), `b` (`B`).
    """
    if start is None:
        g = make_generator(seed, "shift-screen")
        screen = (torch.rand(n_screen, U.shape[-1], generator=g, dtype=torch.float64) - 0.5) * 0.6
        screen[0] = 0.0
        m = min(U.shape[-2], SCREEN_POINTS)  # the screen only has to find the right basin
        with torch.no_grad():
            sse = torch.stack([_weighted_sse(prior.net(U[..., :m, :] - t), y[..., :m],
                                             w[..., :m]) for t in screen])
        start = screen[sse.argmin(0)]
    t = start.clone().requires_grad_(True)  # B x d
    opt = torch.optim.LBFGS([t], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _weighted_sse(prior.net(U - t.unsqueeze(-2)), y, w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = t.detach()
    with torch.no_grad():
        a, b = _affine_fit(prior.net(U - t.unsqueeze(-2)), y, w)
    return t, a, b


def estimate_shift_prior(prior: MetaPrior, family: TaskFamily, n_tasks: int = 64,
                         n_points: int = 1000, seed: int = 0) -> ShiftPrior:
    """Fit `(t, a, b)` on `n_tasks` training tasks of `family` and summarise their spread.

    The shift's mean and covariance and the spreads of `a` and `b` come from fits on the first
    `GLOBAL_POINTS` of each task's points. The residual scale comes from refits on each task's
    `LOCAL_POINTS` points nearest to its lowest one (the median RMS over tasks).
    """
    if family.dim != prior.dim:
        raise ConfigError(f"family {family.name!r} has dimension {family.dim}, the prior "
                          f"{prior.dim}")
    if n_tasks < 2 or n_points < LOCAL_POINTS:
        raise ConfigError(f"need n_tasks >= 2 and n_points >= {LOCAL_POINTS} (got {n_tasks}, "
                          f"{n_points})")
    batch = family.sample(n_tasks, n_points, make_generator(seed, "shift-prior", family.name))
    U = prior.to_unit(batch.X.to(torch.float64))
    y = prior.normalize_y(batch.Y.to(torch.float64))
    w = batch.mask.to(torch.float64)
    m = min(n_points, GLOBAL_POINTS)  # enough for the spread of t; the local refit is precise
    t, a, b = fit_shifts(prior, U[:, :m], y[:, :m], w[:, :m], seed=seed)
    # The neighbourhood of each task's lowest real point.
    lowest = y.masked_fill(~batch.mask, float("inf")).argmin(-1)
    centre = U[torch.arange(n_tasks), lowest]
    dist = (U - centre.unsqueeze(-2)).norm(dim=-1).masked_fill(~batch.mask, float("inf"))
    near = dist.topk(LOCAL_POINTS, largest=False).indices  # B x LOCAL_POINTS
    U_near = U.gather(1, near.unsqueeze(-1).expand(-1, -1, U.shape[-1]))
    y_near, w_near = y.gather(1, near), w.gather(1, near)
    t_near, a_near, b_near = fit_shifts(prior, U_near, y_near, w_near, start=t)
    with torch.no_grad():
        fit = a_near.unsqueeze(-1) * prior.net(U_near - t_near.unsqueeze(-2))
        resid = y_near - fit - b_near.unsqueeze(-1)
    rms = ((w_near * resid.square()).sum(-1) / w_near.sum(-1).clamp(min=1)).sqrt()
    d = U.shape[-1]
    cov = torch.atleast_2d(torch.cov(t.T)) + 1e-8 * torch.eye(d, dtype=torch.float64)
    return ShiftPrior(mean=t.mean(0).tolist(), cov=cov.tolist(),
                      resid_sd=max(float(rms.median()), MIN_RESID_SD),
                      scale_sd=max(float(a.std()), 1e-3), offset_sd=max(float(b.std()), 1e-3),
                      n_tasks=n_tasks)


def attach_shift_prior(prior: MetaPrior, family: TaskFamily, **kwargs) -> ShiftPrior:
    """Estimate the shift prior (`estimate_shift_prior`) and store it as `prior.shift_prior`."""
    shift_prior = estimate_shift_prior(prior, family, **kwargs)
    prior.shift_prior = shift_prior
    return shift_prior


@dataclass
class ShiftParticles:
    """Equally weighted posterior samples of the shift, with the output map they imply.

    Attributes:
        t: `P x d` shifts (unit cube), samples of the posterior.
        a: `P` output scales: the posterior mean of `a` given each `t` (not samples).
        b: `P` output offsets (normalised outputs), likewise conditional posterior means.
    """

    t: Tensor
    a: Tensor
    b: Tensor


def _profile_affine(z: Tensor, y: Tensor, sp: ShiftPrior) -> tuple[Tensor, Tensor]:
    """For each shift, the posterior mean of `(a, b)` and the log marginal likelihood of `y`.

    `z`: `P x n` shifted network values, `y`: `n`. With Gaussian priors a ~ N(1, scale_sd^2),
    b ~ N(0, offset_sd^2) and residual noise resid_sd, `y = a z + b + noise` is linear in
    `(a, b)`, which integrate out exactly.
    """
    s2 = sp.resid_sd**2
    Phi = torch.stack([z, torch.ones_like(z)], -1)  # P x n x 2
    prec0 = torch.tensor([1 / sp.scale_sd**2, 1 / sp.offset_sd**2], dtype=z.dtype)
    H = Phi.transpose(-1, -2) @ Phi / s2 + torch.diag(prec0)
    rhs = (Phi * y.unsqueeze(-1)).sum(-2) / s2 + prec0 * torch.tensor([1.0, 0.0], dtype=z.dtype)
    ab = torch.linalg.solve(H, rhs.unsqueeze(-1))[..., 0]  # P x 2
    r = y - (Phi @ ab.unsqueeze(-1))[..., 0]
    log_lik = (-0.5 * r.square().sum(-1) / s2
               - 0.5 * ((ab[:, 0] - 1) ** 2 * prec0[0] + ab[:, 1] ** 2 * prec0[1])
               - 0.5 * torch.logdet(H))
    return ab, log_lik


def infer_shift(prior: MetaPrior, U: Tensor, y: Tensor, n_particles: int = 256,
                n_proposals: int = 4096, mh_steps: int = 30, seed: int = 0) -> ShiftParticles:
    """Posterior samples of `(t, a, b)` given observations, for the prior's stored shift prior.

    Importance sampling from the widened prior, resampling to `n_particles`, then `mh_steps`
    random-walk Metropolis-Hastings moves per particle (step: half the resampled particles'
    spread, at least the proposals' spacing), which let the particles follow a posterior far
    narrower than that spacing.

    Args:
        prior: a `MetaPrior` with a shift prior (`attach_shift_prior`).
        U: `n x d` unit-cube inputs (n may be 0: then the particles are prior samples).
        y: `n` normalised outputs.
        seed: seeds the sampler; equal seeds and data give equal particles.
    """
    sp = ShiftPrior.of(prior)
    d = prior.dim
    if sp.dim != d:
        raise ConfigError(f"shift prior has dimension {sp.dim}, the prior {d}")
    for name, value, low in (("n_particles", n_particles, 1), ("n_proposals", n_proposals, 1),
                             ("mh_steps", mh_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low} (got {value!r})")
    if U.dim() != 2 or U.shape[-1] != d or y.shape != U.shape[:1]:
        raise InputDataError(f"need U of shape n x {d} and y of shape n (got {tuple(U.shape)} "
                             f"and {tuple(y.shape)})")
    if not torch.isfinite(y).all():
        raise InputDataError(f"y has NaN or inf: {y.tolist()}")
    # A few thousand small network evaluations: CPU float64, wherever the data live.
    U, y = U.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)
    g = make_generator(seed, "shift-posterior", U.shape[0])
    mean = torch.tensor(sp.mean, dtype=torch.float64)
    cov = torch.tensor(sp.cov, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    prec = torch.cholesky_inverse(chol)

    def log_prior(t: Tensor) -> Tensor:
        diff = t - mean
        return -0.5 * ((diff @ prec) * diff).sum(-1)

    def log_target(t: Tensor) -> tuple[Tensor, Tensor]:
        if U.shape[0] == 0:
            return log_prior(t), torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(len(t), 2)
        z = prior.net(U.unsqueeze(-3) - t.unsqueeze(-2))
        ab, log_lik = _profile_affine(z, y, sp)
        return log_lik + log_prior(t), ab

    with torch.no_grad():
        proposals = mean + PROPOSAL_WIDENING * torch.randn(
            n_proposals, d, generator=g, dtype=torch.float64) @ chol.T
        lp, ab = log_target(proposals)
        log_w = lp - log_prior(proposals) / PROPOSAL_WIDENING**2  # target / proposal
        idx = torch.multinomial(torch.softmax(log_w, 0), n_particles, replacement=True,
                                generator=g)
        t, lp, ab = proposals[idx], lp[idx], ab[idx]
        # One random-walk step size for all moves, fixed after resampling (so each particle's
        # chain is a valid Metropolis-Hastings chain): half the resampled spread, but no less
        # than the proposals' spacing, so that particles that resampling collapsed onto a few
        # proposals can spread over the posterior again.
        spacing = PROPOSAL_WIDENING * chol.diagonal() * n_proposals ** (-1 / d)
        spread = t.std(0) if n_particles > 1 else torch.zeros(d, dtype=torch.float64)
        step = torch.maximum(0.5 * spread, spacing)
        for _ in range(mh_steps):
            proposal = t + torch.randn(n_particles, d, generator=g, dtype=torch.float64) * step
            lp_new, ab_new = log_target(proposal)
            accept = torch.rand(n_particles, generator=g, dtype=torch.float64).log() < lp_new - lp
            t = torch.where(accept.unsqueeze(-1), proposal, t)
            ab = torch.where(accept.unsqueeze(-1), ab_new, ab)
            lp = torch.where(accept, lp_new, lp)
    return ShiftParticles(t=t, a=ab[:, 0].clone(), b=ab[:, 1].clone())
