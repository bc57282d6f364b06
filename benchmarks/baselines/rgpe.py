"""RGPE: the ranking-weighted Gaussian-process ensemble (Feurer, Letham & Bakshy, 2018).

Written from the paper. One GP per source task (fitted once) and one GP on the target's data
(refitted at every `ask`). The ensemble predicts `mean = sum_i w_i mu_i(x)` and
`var = sum_i w_i^2 var_i(x)`, where `w_i` is the probability that model i ranks the target's
observations best: over S posterior samples, the fraction of samples in which model i has the
fewest misranked pairs.

Scales. Every task's outcomes are standardised separately (the paper normalises per task), and
each GP is fitted and predicts in its own task's standardised units. The ensemble therefore mixes
standardised predictions: a source model's mean is not mapped onto the target's scale. This is
consistent because (1) the weights depend only on rankings, which are invariant to a task's
affine scaling, and (2) every standardised task has mean 0 and unit spread, so models that rank
the target's points well also predict on a comparable scale.

Acquisition. The acquisition every method of the benchmark shares (`metaprior.acquisition`:
qLogNEI, minimising) on the ensemble, with the target's observed points as its baseline. Noisy
EI needs no incumbent value: it compares the ensemble's joint samples at the candidates with
those at the baseline, so it stays in the ensemble's own units. (The paper used EI.)

Speed. All source GPs share one padded, batched exact predictor (`BatchedGP`) holding their
Cholesky factors, so the ensemble costs a handful of batched tensor ops per acquisition call,
whatever the number of source tasks.
"""

from __future__ import annotations

import warnings

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.operators import DenseLinearOperator
from torch import Tensor

from benchmarks.baselines.source_data import (
    check_observations,
    check_source_data,
    propose_in_unit_cube,
    standardize,
)
from metaprior.acquisition import DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES
from metaprior.errors import ConfigError
from metaprior.tasks.family import make_generator, stream_seed

# Jitter added to the diagonal of training covariances before the Cholesky factorisation.
JITTER = 1e-8


def fit_gp(X: Tensor, Ys: Tensor, seed: int) -> SingleTaskGP:
    """A SingleTaskGP (botorch's default RBF kernel) fitted by marginal likelihood.

    Args:
        X: `n x d` inputs in the unit cube.
        Ys: `n x 1` standardised outcomes (no outcome transform: predictions stay in these units).
    """
    gp = SingleTaskGP(X, Ys, outcome_transform=None)
    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore")  # fit retries and small-n standardisation warnings
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


class BatchedGP:
    """Exact posteriors of M fitted RBF GPs at once, from their data padded to a common size.

    Padded training points get zero cross-covariance and an identity block in the training
    covariance, so they change neither means nor variances.

    Attributes:
        X: `M x n x d` padded training inputs; mask `M x n` (True for real points).
        lengthscale: `M x 1 x d`; outputscale, noise, constant: `M`.
        L: `M x n x n` Cholesky factor of `K + noise I` (identity on padding).
        resid: `M x n`, `y - constant` (zero on padding).
        alpha: `M x n`, `(K + noise I)^-1 (y - constant)` (zero on padding).
    """

    def __init__(self, models: list[SingleTaskGP]):
        if not models:
            raise ConfigError("BatchedGP needs at least one model (got 0)")
        M = len(models)
        n = max(m.train_inputs[0].shape[-2] for m in models)
        d = models[0].train_inputs[0].shape[-1]
        X = torch.zeros(M, n, d, dtype=torch.float64)
        y = torch.zeros(M, n, dtype=torch.float64)
        mask = torch.zeros(M, n, dtype=torch.bool)
        ls = torch.empty(M, 1, d, dtype=torch.float64)
        outputscale = torch.ones(M, dtype=torch.float64)
        noise = torch.empty(M, dtype=torch.float64)
        const = torch.empty(M, dtype=torch.float64)
        with torch.no_grad():
            for i, m in enumerate(models):
                Xi, yi = m.train_inputs[0], m.train_targets
                ni = Xi.shape[-2]
                X[i, :ni], y[i, :ni], mask[i, :ni] = Xi, yi, True
                kern = m.covar_module
                if isinstance(kern, ScaleKernel):
                    outputscale[i] = kern.outputscale
                    kern = kern.base_kernel
                if not isinstance(kern, RBFKernel):
                    raise ConfigError(f"BatchedGP supports RBF kernels (got {type(kern).__name__})")
                ls[i] = kern.lengthscale.reshape(1, -1).expand(1, d)
                noise[i] = m.likelihood.noise.reshape(-1)[0]
                const[i] = m.mean_module.constant.reshape(-1)[0]
        self.X, self.mask, self.lengthscale = X, mask, ls
        self.outputscale, self.noise, self.constant = outputscale, noise, const
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
        K = self._kernel(X, X) * pair
        eye = torch.eye(n, dtype=torch.float64)
        diag = torch.where(mask, noise.unsqueeze(-1) + JITTER, torch.ones_like(y))
        K = K + torch.diag_embed(diag) * eye
        self.L = torch.linalg.cholesky(K)
        resid = ((y - const.unsqueeze(-1)) * mask).unsqueeze(-1)
        self.resid = resid.squeeze(-1)
        self.alpha = torch.cholesky_solve(resid, self.L).squeeze(-1) * mask

    def _kernel(self, A: Tensor, B: Tensor) -> Tensor:
        """RBF kernel with per-model lengthscales: A `M x ... x a x d`, B `M x b x d` (shared by
        the batch) or `M x ... x b x d` (one set per batch).

        Returns `M x ... x a x b`.
        """
        shape = (A.shape[0],) + (1,) * (A.ndim - 2) + (A.shape[-1],)
        ls = self.lengthscale.reshape(shape)
        As, Bs = A / ls, B.reshape(B.shape[0], *(1,) * (A.ndim - B.ndim), *B.shape[1:]) / ls
        sq = (As.pow(2).sum(-1, keepdim=True) - 2 * As @ Bs.transpose(-1, -2)
              + Bs.pow(2).sum(-1).unsqueeze(-2))
        scale = self.outputscale.reshape(-1, *(1,) * (A.ndim - 1))
        return scale * torch.exp(-0.5 * sq.clamp_min(0.0))

    @property
    def num_models(self) -> int:
        return self.X.shape[0]

    def posterior(self, Xq: Tensor, full_cov: bool = False) -> tuple[Tensor, Tensor]:
        """Latent posteriors of all M models at `Xq` (`... x q x d`).

        Returns:
            mean `M x ... x q`, and variance `M x ... x q` (or, with `full_cov`, the covariance
            over the q points of each batch, `M x ... x q x q`).
        """
        M, batch, (q, d) = self.num_models, Xq.shape[:-2], Xq.shape[-2:]
        # Flatten the test batch into one set of B*q points: one triangular solve per model.
        Xf = Xq.reshape(1, -1, d).expand(M, -1, -1)
        Ks = self._kernel(Xf, self.X) * self.mask.unsqueeze(-2)  # M x Bq x n
        mean = (Ks @ self.alpha.unsqueeze(-1)).squeeze(-1) + self.constant.unsqueeze(-1)
        V = torch.linalg.solve_triangular(self.L, Ks.transpose(-1, -2), upper=False)  # M x n x Bq
        mean = mean.reshape(M, *batch, q)
        if full_cov:
            # Per batch b: K(X_b, X_b) - V_b^T V_b, with V_b the n x q columns of batch b.
            Xb = Xq.reshape(1, -1, q, d).expand(M, -1, -1, -1)  # M x B x q x d
            Vb = V.reshape(M, V.shape[-2], -1, q).transpose(-2, -3)  # M x B x n x q
            cov = self._kernel(Xb, Xb) - Vb.transpose(-1, -2) @ Vb
            return mean, cov.reshape(M, *batch, q, q)
        var = (self.outputscale.unsqueeze(-1) - V.pow(2).sum(-2)).clamp_min(1e-12)
        return mean, var.reshape(M, *batch, q)

    def loo(self) -> tuple[Tensor, Tensor]:
        """Closed-form leave-one-out predictive mean and variance at each training point.

        For `K~ = K + noise I`: `mu_-j = y_j - [K~^-1 (y - c)]_j / [K~^-1]_jj`,
        `var_-j = 1 / [K~^-1]_jj` (Rasmussen & Williams, eq. 5.12). Returns `M x n` tensors.
        """
        Kinv = torch.cholesky_inverse(self.L)
        dinv = torch.diagonal(Kinv, dim1=-2, dim2=-1)
        mean = self.constant.unsqueeze(-1) + self.resid - self.alpha / dinv
        return mean, 1.0 / dinv

    def subset(self, idx: Tensor) -> BatchedGP:
        """A view on the models `idx` (a LongTensor)."""
        out = object.__new__(BatchedGP)
        for name in ("X", "mask", "lengthscale", "outputscale", "noise", "constant", "L", "alpha",
                     "resid"):
            setattr(out, name, getattr(self, name)[idx])
        return out


def misrank_counts(f: Tensor, y: Tensor) -> Tensor:
    """Misranked ordered pairs: `sum_{j,k} 1[(f_j < f_k) xor (y_j < y_k)]`.

    Args:
        f: `... x S x n` sampled function values at the target's points.
        y: `n` observed outcomes.

    Returns:
        `... x S` counts.
    """
    fl = f.unsqueeze(-1) < f.unsqueeze(-2)
    yl = y.unsqueeze(-1) < y.unsqueeze(-2)
    return (fl ^ yl).sum((-1, -2))


def loo_misrank_counts(f_loo: Tensor, y: Tensor) -> Tensor:
    """Target model's counts with leave-one-out samples (the paper's rule for the target model):

    `sum_{j,k} 1[(f^{-j}(x_j) < y_k) xor (y_j < y_k)]`, so the target cannot win by
    interpolating its own data. f_loo: `S x n`; returns `S`.
    """
    fl = f_loo.unsqueeze(-1) < y.reshape(1, 1, -1)
    yl = y.unsqueeze(-1) < y.unsqueeze(-2)
    return (fl ^ yl).sum((-1, -2))


def ranking_weights(source_losses: Tensor, target_losses: Tensor | None,
                    generator: torch.Generator) -> Tensor:
    """RGPE weights from sampled ranking losses.

    Args:
        source_losses: `M x S` misrank counts of the source models.
        target_losses: `S` counts of the target model (leave-one-out), or None.
        generator: breaks ties between models uniformly at random.

    Returns:
        `M + 1` weights (target last) summing to 1. A source model whose median loss exceeds the
        95th percentile of the target's is dropped (weight dilution, as in the paper).
    """
    M, S = source_losses.shape
    losses = source_losses.to(torch.float64)
    keep = torch.ones(M, dtype=torch.bool)
    if target_losses is not None:
        t = target_losses.to(torch.float64)
        keep = torch.quantile(losses, 0.5, dim=-1) <= torch.quantile(t, 0.95)
        losses = torch.cat([losses, t.unsqueeze(0)], 0)
        keep = torch.cat([keep, torch.tensor([True])])
    # Dropped models can never be best; integer losses plus noise in [0, 0.5) break ties fairly.
    losses = torch.where(keep.unsqueeze(-1), losses, torch.full_like(losses, float("inf")))
    noise = torch.rand(losses.shape, generator=generator, dtype=torch.float64) * 0.5
    best = (losses + noise).argmin(0)
    w = torch.bincount(best, minlength=losses.shape[0]).to(torch.float64) / S
    if target_losses is None:
        w = torch.cat([w, w.new_zeros(1)])
    return w


class EnsembleModel(Model):
    """The weighted GP ensemble as a botorch model: one output, joint over the q points.

    The members are treated as independent: the ensemble is `sum_i w_i f_i`, with mean
    `sum w_i mu_i` and covariance `sum w_i^2 Cov_i`. The covariance is full, not diagonal,
    because noisy EI samples the baseline and the candidates jointly: with independent points
    it would see no correlation between a candidate and the observed points near it.

    Args:
        parts: list of `(BatchedGP, weights: M)` pairs, each model's prediction entering with its
            weight.
    """

    _num_outputs = 1

    def __init__(self, parts: list[tuple[BatchedGP, Tensor]]):
        super().__init__()
        self.parts = parts

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def predict(self, X: Tensor, full_cov: bool = False) -> tuple[Tensor, Tensor]:
        """Ensemble mean `... x q` at `X` (`... x q x d`), and variance `... x q` (or, with
        `full_cov`, covariance `... x q x q`)."""
        mean = X.new_zeros(X.shape[:-1])
        cov = X.new_zeros(X.shape[:-1] + X.shape[-2:-1] if full_cov else X.shape[:-1])
        for gp, w in self.parts:
            mu, c = gp.posterior(X, full_cov=full_cov)
            wr = w.reshape(-1, *(1,) * (X.ndim - 1))
            mean = mean + (wr * mu).sum(0)
            cov = cov + (wr.unsqueeze(-1).pow(2) * c if full_cov else wr.pow(2) * c).sum(0)
        return mean, cov if full_cov else cov.clamp_min(1e-12)

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False,
                  posterior_transform=None, **kwargs) -> GPyTorchPosterior:
        """The latent ensemble's joint posterior over the q points of each batch of `X`
        (`... x q x d`)."""
        mean, cov = self.predict(X, full_cov=True)
        # A latent covariance of near-duplicate points (the baseline and a candidate on it, or
        # a source GP fitted to constant values) is PSD only up to rounding: as a linear
        # operator, its Cholesky factor is taken with gpytorch's jitter instead of failing.
        post = GPyTorchPosterior(MultivariateNormal(mean, DenseLinearOperator(cov)))
        return posterior_transform(post) if posterior_transform is not None else post


class RGPEOptimizer:
    """Ask/tell RGPE in the unit cube, minimising, with the shared qLogNEI on the ensemble.

    Args:
        source_data: list of `(X_i: n_i x dim in [0, 1]^dim, Y_i: n_i x 1)`.
        dim: input dimension.
        seed: seeds GP fits, ranking samples and acquisition optimisation (runs are reproducible).
        n_init: uniformly random points before the ensemble is used (0: the first point is
            already the ensemble's acquisition argmax, the transfer warm start).
        n_samples: posterior samples S per model for the ranking weights.
        num_restarts, raw_samples: acquisition optimisation (`optimize_acqf`; default: the
            library's, `metaprior.acquisition`).
    """

    def __init__(self, source_data, dim: int, seed: int = 0, n_init: int = 0,
                 n_samples: int = 256, num_restarts: int = DEFAULT_NUM_RESTARTS,
                 raw_samples: int = DEFAULT_RAW_SAMPLES):
        self.source = check_source_data(source_data, dim)
        for name, v, lo in (("n_init", n_init, 0), ("n_samples", n_samples, 1),
                            ("num_restarts", num_restarts, 1), ("raw_samples", raw_samples, 1)):
            if int(v) < lo:
                raise ConfigError(f"{name} must be >= {lo} (got {v})")
        self.dim, self.seed, self.n_init = int(dim), int(seed), int(n_init)
        self.n_samples, self.num_restarts, self.raw_samples = (
            int(n_samples), int(num_restarts), int(raw_samples))
        self.X = torch.empty(0, self.dim, dtype=torch.float64)
        self.Y = torch.empty(0, 1, dtype=torch.float64)
        self.weights: Tensor | None = None  # last weights: M sources, then the target
        gps = [fit_gp(X, standardize(Y)[0], stream_seed(seed, "rgpe-source", i))
               for i, (X, Y) in enumerate(self.source)]
        self.sources = BatchedGP(gps)
        self._source_X = torch.cat([X for X, _ in self.source])

    def tell(self, X, y) -> None:
        """Record evaluations: X `q x dim` (unit cube), y `q` or `q x 1`."""
        X, y = check_observations(X, y, self.dim)
        self.X = torch.cat([self.X, X])
        self.Y = torch.cat([self.Y, y])

    def compute_weights(self, Ys: Tensor, target: BatchedGP | None) -> Tensor:
        """Weights (`M + 1`, target last) from the target's standardised outcomes `Ys` (`n x 1`)."""
        M, n = self.sources.num_models, Ys.shape[0]
        if n < 2:  # no pair to rank: uniform over the source models
            return torch.cat([torch.full((M,), 1.0 / M, dtype=torch.float64),
                              torch.zeros(1, dtype=torch.float64)])
        gen = make_generator(self.seed, "rgpe-weights", n)
        y = Ys.squeeze(-1)
        mean, cov = self.sources.posterior(self.X, full_cov=True)  # M x n, M x n x n
        cov = cov + 1e-8 * torch.eye(n, dtype=torch.float64)
        Lc = torch.linalg.cholesky_ex(cov)[0]
        z = torch.randn(M, n, self.n_samples, generator=gen, dtype=torch.float64)
        f = (mean.unsqueeze(-1) + Lc @ z).transpose(-1, -2)  # M x S x n
        src = misrank_counts(f, y)
        loo_mean, loo_var = target.loo()
        zt = torch.randn(self.n_samples, n, generator=gen, dtype=torch.float64)
        f_loo = loo_mean[0] + loo_var[0].sqrt() * zt  # S x n, independent per point
        return ranking_weights(src, loo_misrank_counts(f_loo, y), gen)

    def build_model(self) -> tuple[EnsembleModel, Tensor]:
        """The current ensemble (in target-standardised units) and noisy EI's baseline: the
        observed points, or before any observation a `1 x dim` stand-in (see below)."""
        n = self.X.shape[0]
        Ys = standardize(self.Y)[0]
        target = None
        if n >= 2:
            target = BatchedGP([fit_gp(self.X, Ys, stream_seed(self.seed, "rgpe-target", n))])
        w = self.compute_weights(Ys, target)
        self.weights = w
        ws = w[:-1]
        idx = (ws > 0).nonzero().squeeze(-1)  # zero-weight sources cost nothing
        parts = [(self.sources.subset(idx), ws[idx])] if idx.numel() else []
        if target is not None and w[-1] > 0:
            parts.append((target, w[-1:]))
        model = EnsembleModel(parts)
        if n == 0:
            # No observation yet: the source point with the lowest ensemble mean stands in for
            # the baseline, i.e. the incumbent (the LogEI used before took that mean as best_f).
            with torch.no_grad():
                best = model.predict(self._source_X)[0].argmin()
            return model, self._source_X[best].unsqueeze(0)
        return model, self.X

    def ask(self) -> Tensor:
        """The next point to evaluate: `1 x dim` in the unit cube."""
        n = self.X.shape[0]
        if n < self.n_init:
            g = make_generator(self.seed, "rgpe-init", n)
            return torch.rand(1, self.dim, generator=g, dtype=torch.float64)
        model, X_baseline = self.build_model()
        return propose_in_unit_cube(model, X_baseline, self.num_restarts, self.raw_samples,
                                    self.seed, "rgpe-ask", n)
