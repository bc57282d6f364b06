"""FSBO: few-shot BO with a meta-learned deep-kernel GP (Wistuba & Grabocka, ICLR 2021).

Written from the paper. The surrogate is a GP with a constant mean and a deep kernel,
`ScaleKernel(Matern-5/2)` on the features of an MLP (4 x 32 ReLU units by default).

Meta-training maximises the exact GP marginal likelihood, jointly in network weights and kernel
hyperparameters, on batches of points drawn from one training task at a time (each task's
outcomes standardised), with Adam and a cosine learning-rate schedule.

At test time the meta-trained weights are copied, fine-tuned on the target's standardised
observations (Adam, a few dozen steps, early stopping on the training loss), frozen, and the
acquisition every method of the benchmark shares (`metaprior.acquisition`: qLogNEI, minimising,
with the target's observed points as baseline) proposes the next point. (The paper used EI.)

Warm start. The paper builds its initial design from the meta-training data (configurations that
do well across training tasks). Our simple faithful version picks one point: among the source
points, the one with the best *average rank* across source tasks, where each task ranks every
candidate by the meta-trained GP's posterior mean conditioned on that task's data. Ranks make
tasks of different scales comparable, and the GP lets every task score candidates it never
evaluated. (Conditioning on nothing would be uninformative: the prior mean is a constant.)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from botorch.models.gpytorch import GPyTorchModel
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.models import ExactGP
from torch import Tensor, nn

from benchmarks.baselines.source_data import (
    check_observations,
    check_source_data,
    propose_in_unit_cube,
    standardize,
)
from metaprior.acquisition import DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES
from metaprior.errors import ConfigError
from metaprior.tasks.family import make_generator, stream_seed

# Default meta-training steps: 20-55 s on one core for a 2-D family (2.3-6.6 ms a step, by load).
DEFAULT_META_STEPS = 8000
# Caps of the warm-start computation: candidates, tasks and points per task it conditions on.
WARM_CANDIDATES, WARM_TASKS, WARM_POINTS = 2048, 64, 256


class DeepKernel(nn.Module):
    """The learnable parts of the deep-kernel GP: MLP features, constant mean, Matern-5/2 kernel
    with an output scale, and Gaussian noise. All float64.

    Args:
        dim: input dimension d.
        hidden: widths of the MLP's layers; the last width is the feature dimension.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(width, h))
            if i < len(hidden) - 1:  # linear features at the output, ReLU in between
                layers.append(nn.ReLU())
            width = h
        self.net = nn.Sequential(*layers)
        self.mean = ConstantMean()
        self.covar = ScaleKernel(MaternKernel(nu=2.5))
        self.likelihood = GaussianLikelihood(noise_constraint=GreaterThan(1e-6))
        self.double()

    def nll(self, X: Tensor, y: Tensor) -> Tensor:
        """Exact negative log marginal likelihood per point, X `n x d`, y `n` -> scalar.

        Equals `-ExactMarginalLogLikelihood(...)(model(X), y)` of the GP built on these modules
        (no priors are registered). Written out so meta-training avoids gpytorch's overhead.
        """
        z = self.net(X)
        K = self.covar(z).to_dense() + self.likelihood.noise * torch.eye(
            X.shape[0], dtype=X.dtype)
        L, info = torch.linalg.cholesky_ex(K)
        if info.any():  # features collapsed: add jitter rather than fail a whole training run
            L = torch.linalg.cholesky(K + 1e-6 * torch.eye(X.shape[0], dtype=X.dtype))
        r = (y - self.mean(z)).unsqueeze(-1)
        a = torch.linalg.solve_triangular(L, r, upper=False)
        n = X.shape[0]
        quad = a.pow(2).sum()
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return 0.5 * (quad + logdet + n * math.log(2 * math.pi)) / n


class DeepKernelGP(ExactGP, GPyTorchModel):
    """The deep-kernel GP as a botorch model, on training data X `n x d`, y `n` (standardised)."""

    _num_outputs = 1

    def __init__(self, X: Tensor, y: Tensor, kernel: DeepKernel):
        super().__init__(X, y, kernel.likelihood)
        self.kernel = kernel

    def forward(self, x: Tensor) -> MultivariateNormal:
        z = self.kernel.net(x)
        return MultivariateNormal(self.kernel.mean(z), self.kernel.covar(z))


@dataclass
class FSBOPrior:
    """A meta-trained deep kernel.

    Attributes:
        dim: input dimension d.
        hidden: MLP widths.
        state: the `DeepKernel` state dict (network weights and kernel hyperparameters).
        x_init: `1 x d` warm-start point in the unit cube.
        losses: meta-training losses (NLL per point), one per step.
    """

    dim: int
    hidden: tuple[int, ...]
    state: dict
    x_init: Tensor
    losses: list[float] = field(default_factory=list)

    def make_kernel(self) -> DeepKernel:
        """A fresh `DeepKernel` holding a copy of the meta-trained weights."""
        kernel = DeepKernel(self.dim, self.hidden)
        kernel.load_state_dict(copy.deepcopy(self.state))
        return kernel


def task_nll(prior: FSBOPrior, source_data, max_points: int = 64) -> float:
    """Mean NLL per point of the prior's GP over the source tasks (first `max_points` of each)."""
    kernel = prior.make_kernel()
    src = check_source_data(source_data, prior.dim)
    with torch.no_grad():
        vals = [float(kernel.nll(X[:max_points], standardize(Y[:max_points])[0].squeeze(-1)))
                for X, Y in src]
    return sum(vals) / len(vals)


def warm_start_point(kernel: DeepKernel, src: list[tuple[Tensor, Tensor]],
                     generator: torch.Generator) -> Tensor:
    """The source point with the best average rank across source tasks (see module docstring).

    Returns `1 x d`.
    """
    cand = torch.cat([X for X, _ in src])
    if cand.shape[0] > WARM_CANDIDATES:
        cand = cand[torch.randperm(cand.shape[0], generator=generator)[:WARM_CANDIDATES]]
    tasks = torch.randperm(len(src), generator=generator)[:WARM_TASKS].tolist()
    ranks = torch.zeros(cand.shape[0], dtype=torch.float64)
    with torch.no_grad():
        zc = kernel.net(cand)
        noise = kernel.likelihood.noise
        for t in tasks:
            X, Y = src[t]
            if X.shape[0] > WARM_POINTS:
                keep = torch.randperm(X.shape[0], generator=generator)[:WARM_POINTS]
                X, Y = X[keep], Y[keep]
            y = standardize(Y)[0].squeeze(-1)
            z = kernel.net(X)
            K = kernel.covar(z).to_dense() + (noise + 1e-6) * torch.eye(X.shape[0],
                                                                         dtype=X.dtype)
            c = kernel.mean(z[:1])
            alpha = torch.cholesky_solve((y - c).unsqueeze(-1), torch.linalg.cholesky(K))
            mu = (kernel.covar(zc, z).to_dense() @ alpha).squeeze(-1)
            ranks += mu.argsort().argsort().to(torch.float64)
    return cand[ranks.argmin()].reshape(1, -1).clone()


def fsbo_meta_train(source_data, dim: int, seed: int = 0, steps: int = DEFAULT_META_STEPS,
                    lr: float = 1e-3, batch_size: int = 64,
                    hidden: tuple[int, ...] = (32, 32, 32, 32)) -> FSBOPrior:
    """Meta-train the deep-kernel GP on source data by marginal likelihood.

    Args:
        source_data: list of `(X_i: n_i x dim in [0, 1]^dim, Y_i: n_i x 1)`.
        dim: input dimension.
        seed: seeds the network's initialisation and the batch sampling.
        steps: Adam steps, one batch (of one task) each; 0 returns the initialisation.
        lr: peak learning rate of the cosine schedule.
        batch_size: points per batch (all of a task's points when it has fewer).
        hidden: MLP widths.

    Returns:
        An `FSBOPrior`.
    """
    src = check_source_data(source_data, dim)
    if int(steps) < 0 or int(batch_size) < 2 or not lr > 0:
        raise ConfigError(f"need steps >= 0, batch_size >= 2, lr > 0 "
                          f"(got {steps}, {batch_size}, {lr})")
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"hidden must be non-empty positive widths (got {hidden})")
    with torch.random.fork_rng():
        torch.manual_seed(stream_seed(seed, "fsbo-init"))
        kernel = DeepKernel(dim, hidden)
    data = [(X, standardize(Y)[0].squeeze(-1)) for X, Y in src]
    gen = make_generator(seed, "fsbo-batches")
    opt = torch.optim.Adam(kernel.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(steps), 1))
    losses = []
    for _ in range(int(steps)):
        X, y = data[int(torch.randint(len(data), (1,), generator=gen))]
        idx = torch.randperm(X.shape[0], generator=gen)[:batch_size]
        loss = kernel.nll(X[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    x_init = warm_start_point(kernel, src, make_generator(seed, "fsbo-warm-start"))
    state = {k: v.detach().clone() for k, v in kernel.state_dict().items()}
    return FSBOPrior(dim=int(dim), hidden=hidden, state=state, x_init=x_init, losses=losses)


class FSBOOptimizer:
    """Ask/tell FSBO in the unit cube, minimising.

    Args:
        prior: a meta-trained `FSBOPrior` of the same dimension.
        dim: input dimension.
        seed: seeds the acquisition optimisation.
        finetune_steps: maximum Adam steps of fine-tuning per `ask`, always from the meta-trained
            weights. 20 by default: on Branin (4 held-out tasks, budget 15) 100 steps overfit the
            network to a handful of points (median regret at 15: 0.010 against 0.0005 at 20 steps
            and 0.0009 without fine-tuning).
        finetune_lr: Adam's learning rate for fine-tuning.
        patience: stop fine-tuning after this many steps without a loss decrease of 1e-4.
        num_restarts, raw_samples: acquisition optimisation (`optimize_acqf`; default: the
            library's, `metaprior.acquisition`).
    """

    def __init__(self, prior: FSBOPrior, dim: int, seed: int = 0, finetune_steps: int = 20,
                 finetune_lr: float = 1e-3, patience: int = 16,
                 num_restarts: int = DEFAULT_NUM_RESTARTS, raw_samples: int = DEFAULT_RAW_SAMPLES):
        if int(dim) != prior.dim:
            raise ConfigError(f"dim {dim} does not match the prior's dim {prior.dim}")
        if int(finetune_steps) < 0 or not finetune_lr > 0 or int(patience) < 1:
            raise ConfigError(f"need finetune_steps >= 0, finetune_lr > 0, patience >= 1 "
                              f"(got {finetune_steps}, {finetune_lr}, {patience})")
        if int(num_restarts) < 1 or int(raw_samples) < 1:
            raise ConfigError(f"num_restarts and raw_samples must be >= 1 "
                              f"(got {num_restarts}, {raw_samples})")
        self.prior, self.dim, self.seed = prior, int(dim), int(seed)
        self.finetune_steps, self.finetune_lr, self.patience = (
            int(finetune_steps), float(finetune_lr), int(patience))
        self.num_restarts, self.raw_samples = int(num_restarts), int(raw_samples)
        self.X = torch.empty(0, self.dim, dtype=torch.float64)
        self.Y = torch.empty(0, 1, dtype=torch.float64)

    def tell(self, X, y) -> None:
        """Record evaluations: X `q x dim` (unit cube), y `q` or `q x 1`."""
        X, y = check_observations(X, y, self.dim)
        self.X = torch.cat([self.X, X])
        self.Y = torch.cat([self.Y, y])

    def fit_model(self) -> tuple[DeepKernelGP, Tensor]:
        """Fine-tune a copy of the prior on the target's data; returns the frozen GP and `Ys`."""
        Ys = standardize(self.Y)[0]
        y = Ys.squeeze(-1)
        kernel = self.prior.make_kernel()
        opt = torch.optim.Adam(kernel.parameters(), lr=self.finetune_lr)
        best, best_state, since = float("inf"), copy.deepcopy(kernel.state_dict()), 0
        for _ in range(self.finetune_steps):
            loss = kernel.nll(self.X, y)
            if loss.item() < best - 1e-4:
                best, best_state, since = loss.item(), copy.deepcopy(kernel.state_dict()), 0
            else:
                since += 1
                if since >= self.patience:
                    break
            opt.zero_grad()
            loss.backward()
            opt.step()
        kernel.load_state_dict(best_state)
        kernel.requires_grad_(False)
        model = DeepKernelGP(self.X, y, kernel)
        model.eval()
        return model, Ys

    def ask(self) -> Tensor:
        """The next point to evaluate: `1 x dim` in the unit cube."""
        n = self.X.shape[0]
        if n == 0:
            return self.prior.x_init.clone()
        model, _ = self.fit_model()
        return propose_in_unit_cube(model, self.X, self.num_restarts, self.raw_samples,
                                    self.seed, "fsbo-ask", n)
