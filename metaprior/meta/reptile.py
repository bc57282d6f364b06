"""Batched Reptile (Nichol, Achiam & Schulman 2018): meta-train a network's initialisation.

Each outer step samples B tasks, adapts B copies of theta in one vectorised inner loop, and
applies `theta.grad = theta - mean_i(phi_i)` through a torch optimiser (SGD with a linearly
annealed step: the paper's update; or Adam, or SGD with Nesterov momentum, on the same
pseudo-gradient).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time

import torch
from tqdm.auto import tqdm

from metaprior.adaptation import adapt_batched, n_epochs, order_keys
from metaprior.config import OUTER_MOMENTUM, ReptileConfig
from metaprior.errors import CheckpointError, ConfigError, TaskFamilyError, TrainingDivergedError
from metaprior.meta import distributed as dist_utils
from metaprior.meta.checkpoint import CheckpointLock, load_checkpoint, save_checkpoint
from metaprior.meta.memory import check_fits_memory, chunk_size_for_memory
from metaprior.nets import init_params
from metaprior.prior import MetaPrior
from metaprior.priorfile import check_writable_file
from metaprior.shift import attach_shift_prior
from metaprior.space import SearchSpace
from metaprior.tasks.family import TaskBatch, TaskFamily, make_generator

STATS_TASKS = 256  # tasks sampled once to estimate the family-level output mean and std
HISTORY_EVERY = 10  # steps averaged into one entry of the loss history


def check_finite_outputs(batch: TaskBatch, family: TaskFamily, where: str) -> None:
    """`TaskFamilyError` when a sampled task has NaN or inf outputs: they would train NaN."""
    Y = batch.Y[batch.mask]
    finite = torch.isfinite(Y)
    if bool(finite.all()):
        return
    n_nan, n_inf = int(torch.isnan(Y).sum()), int(torch.isinf(Y).sum())
    raise TaskFamilyError(f"{family.name}: {n_nan} NaN and {n_inf} inf outputs among the "
                          f"{Y.numel()} sampled for {where}; a family's outputs must be finite")


def output_stats(family: TaskFamily, points: int, seed: int) -> tuple[float, float]:
    """Family-level mean and std of the outputs over training tasks (masked)."""
    batch = family.sample(STATS_TASKS, points, make_generator(seed, "output-stats"), "train")
    check_finite_outputs(batch, family, "the output statistics")
    y = batch.Y[batch.mask].double()
    mean = float(y.mean())
    std = float(y.std()) if y.numel() > 1 else 0.0
    if not (math.isfinite(mean) and math.isfinite(std)) and y.numel() > 1:
        # Squares of values near 1e200 overflow; those of values scaled to [-1, 1] cannot.
        scale = float(y.abs().max())
        mean, std = float((y / scale).mean()) * scale, float((y / scale).std()) * scale
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise TaskFamilyError(f"{family.name}: outputs too large to standardise (mean={mean}, "
                              f"std={std}); rescale the family's outputs")
    if not std > 0:
        raise TaskFamilyError(f"{family.name}: outputs have zero spread (std={std}); "
                              "nothing to learn")
    return mean, std


def resolve_device(device) -> torch.device:
    """`device` as a `torch.device` that this machine has; else `ConfigError` naming it."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device; use 'cpu', 'cuda' or "
                          f"'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} requested but CUDA is not available")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device={device!r} requested but this machine has {n} CUDA "
                              f"device(s): cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device={device!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise ConfigError(f"device={device!r}: meta-training runs on 'cpu', 'cuda' or 'mps'")
    return dev


def check_max_steps(max_steps) -> int | None:
    """None, or an integer >= 0 (0 returns the initialisation, untrained)."""
    if max_steps is None:
        return None
    if not isinstance(max_steps, numbers.Integral) or isinstance(max_steps, bool) \
            or max_steps < 0:
        raise ConfigError(f"max_steps must be None or an integer >= 0 (got {max_steps!r})")
    return int(max_steps)


def check_family(family: TaskFamily, cfg: ReptileConfig) -> None:
    if not isinstance(family, TaskFamily):
        raise TaskFamilyError(f"family must be a metaprior TaskFamily (got {type(family)})")
    n_tasks = family.n_train_tasks()
    if n_tasks is not None and n_tasks < cfg.tasks_per_step:
        raise TaskFamilyError(
            f"{family.name} has {n_tasks} training tasks, fewer than tasks_per_step="
            f"{cfg.tasks_per_step}; lower tasks_per_step or add tasks"
        )


def prepare_batch(batch: TaskBatch, prior_like: MetaPrior, rows: slice, device, dtype):
    """Unit-cube inputs and standardised outputs of a shard of a meta-batch, on `device`."""
    X = prior_like.to_unit(batch.X[rows]).to(device=device, dtype=dtype)
    Y = prior_like.normalize_y(batch.Y[rows].double()).to(device=device, dtype=dtype)
    return X, Y, batch.mask[rows].to(device)


class ReptileTrainer:
    """The state of one meta-training run; `meta_train` is its one-call front."""

    def __init__(self, family: TaskFamily, cfg: ReptileConfig, seed: int, device):
        check_family(family, cfg)
        self.family, self.cfg, self.seed = family, cfg, int(seed)
        self.device = resolve_device(device)
        self.distributed = dist_utils.init_if_launched(self.device)
        self.rank, self.world = dist_utils.rank_and_size()
        self.chunk = cfg.chunk_size or cfg.tasks_per_step
        if cfg.max_memory_mb is not None:
            self.chunk = min(self.chunk, chunk_size_for_memory(cfg, family.dim, cfg.max_memory_mb,
                                                               self.world))
        self.y_mean, self.y_std = output_stats(family, cfg.points_per_task, seed)
        check_fits_memory(cfg, family.dim, self.chunk, self.device)
        init = init_params(family.dim, cfg.hidden, make_generator(seed, "init"))
        self.theta = [torch.nn.Parameter(p.to(self.device)) for p in init]
        if cfg.outer_optimizer == "adam":
            self.opt = torch.optim.Adam(self.theta, lr=cfg.outer_lr)
        elif cfg.outer_optimizer == "nesterov":
            self.opt = torch.optim.SGD(self.theta, lr=cfg.outer_lr, momentum=OUTER_MOMENTUM,
                                       nesterov=True)
        else:
            self.opt = torch.optim.SGD(self.theta, lr=cfg.outer_lr)
        self.step = 0
        self.history: list[float] = []
        self.window: list[float] = []  # losses of the history entry in progress
        self.seconds = 0.0

    def snapshot(self) -> MetaPrior:
        stats = {"outer_steps_done": self.step, "seconds": round(self.seconds, 3),
                 "task_adaptations": self.step * self.cfg.tasks_per_step,
                 "world_size": self.world, "device": str(self.device), "seed": self.seed,
                 "loss_history": self.history[-200:]}
        if self.seconds > 0:
            stats["task_adaptations_per_s"] = round(stats["task_adaptations"] / self.seconds, 2)
        return MetaPrior([p.detach().cpu() for p in self.theta], self.family.bounds,
                         self.y_mean, self.y_std, self.cfg, self.family.name, stats,
                         space=family_space(self.family))

    # ---- checkpoints -----------------------------------------------------------------
    def run_keys(self) -> dict:
        return {"seed": self.seed, "config": self.cfg.to_dict(), "family": self.family.name}

    def save(self, path) -> None:
        if self.rank != 0:
            return
        state = {**self.run_keys(), "step": self.step,
                 "theta": [p.detach().cpu() for p in self.theta],
                 "opt": self.opt.state_dict(), "history": list(self.history),
                 "window": list(self.window),
                 "seconds": self.seconds}
        save_checkpoint(path, state)

    def restore(self, path) -> bool:
        state = load_checkpoint(path, self.run_keys())
        if state is None:
            return False
        try:
            with torch.no_grad():
                for p, q in zip(self.theta, state["theta"], strict=True):
                    p.copy_(q)
            self.opt.load_state_dict(state["opt"])
            self.step, self.history = int(state["step"]), list(state["history"])
            self.window = list(state.get("window", []))
            self.seconds = float(state["seconds"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: incomplete or inconsistent checkpoint "
                                  f"({type(e).__name__}: {e})") from None
        return True

    # ---- one outer step --------------------------------------------------------------
    def outer_step(self) -> float:
        cfg, B, P = self.cfg, self.cfg.tasks_per_step, self.cfg.points_per_task
        g = make_generator(self.seed, "step", self.step)
        batch = self.family.sample(B, P, g, "train", grid=cfg.grid_points)
        check_finite_outputs(batch, self.family, f"outer step {self.step}")
        n = batch.Y.shape[-1]
        keys = order_keys(n_epochs(cfg.inner_steps, n, cfg.inner_batch_size), B, n, g)
        mine = dist_utils.shard(B, self.rank, self.world)
        chunk = self.chunk
        theta = [p.detach() for p in self.theta]
        delta_sum = [torch.zeros_like(p) for p in theta]
        loss_sum = torch.zeros(1, device=self.device, dtype=theta[0].dtype)
        ref = self.snapshot_like()
        for start in range(mine.start, mine.stop, chunk):
            rows = slice(start, min(start + chunk, mine.stop))
            X, Y, mask = prepare_batch(batch, ref, rows, self.device, theta[0].dtype)
            b = X.shape[0]
            stacked = [p.unsqueeze(0).expand(b, *p.shape) for p in theta]
            phi, loss0 = adapt_batched(stacked, X, Y, mask, keys[:, rows].to(self.device),
                                       cfg.inner_steps, cfg.inner_batch_size, cfg.inner_lr,
                                       cfg.inner_optimizer, cfg.max_grad_norm)
            for acc, p, q in zip(delta_sum, theta, phi, strict=True):
                acc += (p.unsqueeze(0) - q).sum(0)
            loss_sum += loss0.sum()
            del phi
        dist_utils.all_reduce_sum([*delta_sum, loss_sum])
        if cfg.anneal:
            frac = 1.0 - self.step / cfg.outer_steps
            for group in self.opt.param_groups:
                group["lr"] = cfg.outer_lr * frac
        for p, d in zip(self.theta, delta_sum, strict=True):
            p.grad = d / B
        try:
            self.opt.step()
        except RuntimeError as e:  # torch's Adam refuses a step too large for float32
            if "overflow" not in str(e):
                raise
            raise self.diverged(f"the outer step overflowed ({e})") from None
        self.check_finite(loss_sum)
        self.step += 1
        return float(loss_sum) / B

    def check_finite(self, loss_sum: torch.Tensor) -> None:
        """Stop a diverged run before a NaN checkpoint or prior is written (one sync)."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.theta]
                             + [torch.isfinite(loss_sum).all()])
        if not bool(finite.all()):
            raise self.diverged("the weights became NaN or inf")

    def diverged(self, what: str) -> TrainingDivergedError:
        cfg = self.cfg
        return TrainingDivergedError(
            f"meta-training diverged at outer step {self.step}: {what} "
            f"(inner_lr={cfg.inner_lr}, outer_lr={cfg.outer_lr}, inner_optimizer="
            f"{cfg.inner_optimizer}, outer_optimizer={cfg.outer_optimizer}); lower the "
            f"learning rates. Nothing was saved; an earlier checkpoint is intact"
        )

    def snapshot_like(self) -> MetaPrior:
        """A lightweight view used only for the normalisation maps."""
        if not hasattr(self, "_ref"):
            self._ref = MetaPrior([p.detach().cpu() for p in self.theta], self.family.bounds,
                                  self.y_mean, self.y_std, self.cfg, self.family.name,
                                  space=family_space(self.family))
        return self._ref


def family_space(family: TaskFamily) -> SearchSpace:
    """The family's `space` if it has one, else the unnamed floats of its bounds."""
    space = getattr(family, "space", None)
    return space if space is not None else SearchSpace.from_bounds(family.bounds)


def meta_train(family: TaskFamily, config: ReptileConfig | None = None, seed: int = 0,
               device=None, progress: bool = True, checkpoint=None, resume: bool = False,
               log_dir=None, max_steps: int | None = None,
               shift_prior: bool = True) -> MetaPrior:
    """Meta-train a prior on `family` with batched Reptile.

    Args:
        family: the task family (its training split).
        config: a `ReptileConfig` (default `ReptileConfig()`).
        seed: seeds every random stream; equal seeds give identical priors on CPU.
        device: "cpu" (default), "cuda", or a `torch.device`.
        progress: show a tqdm progress bar.
        checkpoint: path of a checkpoint written every `config.checkpoint_every` steps and on
            Ctrl-C.
        resume: continue from `checkpoint` if it exists; the result is bit-identical to an
            uninterrupted run on CPU.
        log_dir: write TensorBoard scalars there (needs the `tensorboard` extra).
        max_steps: stop after this many outer steps in this call (the run can be resumed);
            0 returns the initialisation.
        shift_prior: once training is complete, also estimate the prior over task shifts
            that `ShiftEnsembleModel` needs (`metaprior.shift`; a few seconds).

    Returns:
        The meta-trained `MetaPrior`.

    Raises:
        ConfigError: a bad argument, a device this machine lacks, a checkpoint path that is a
            folder, or a network that cannot fit in the device's memory.
        TaskFamilyError: the family's outputs are NaN, inf or constant.
        CheckpointError: the checkpoint belongs to another run, or another run holds it.
        TrainingDivergedError: the weights became NaN or inf; nothing is saved.

    Example:
        >>> prior = meta_train(Logistic(), ReptileConfig(outer_steps=500), seed=0)
    """
    cfg = config if config is not None else ReptileConfig()
    if not isinstance(cfg, ReptileConfig):
        raise ConfigError(f"config must be a ReptileConfig (got {type(cfg).__name__})")
    max_steps = check_max_steps(max_steps)
    trainer = ReptileTrainer(family, cfg, seed, device)
    with contextlib.ExitStack() as stack:
        if checkpoint is not None and trainer.rank == 0:
            # Before any work: a path that cannot be written would fail only at the first
            # checkpoint, and a second run on the same checkpoint would overwrite this one's.
            check_writable_file(checkpoint, "checkpoint")
            stack.enter_context(CheckpointLock(checkpoint))
        return train_loop(trainer, checkpoint, resume, log_dir, max_steps, progress, shift_prior)


def train_loop(trainer: ReptileTrainer, checkpoint, resume: bool, log_dir, max_steps: int | None,
               progress: bool, shift_prior: bool) -> MetaPrior:
    """`meta_train`'s loop on a prepared trainer (see there for the arguments)."""
    family, cfg, seed = trainer.family, trainer.cfg, trainer.seed
    if resume and checkpoint is not None:
        trainer.restore(checkpoint)
    # A rank that cannot see the checkpoint would silently start over and train another model.
    dist_utils.check_same(trainer.step, "the outer step to resume from")
    writer = None
    if log_dir is not None and trainer.rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir)
    stop = cfg.outer_steps if max_steps is None else min(cfg.outer_steps,
                                                         trainer.step + int(max_steps))
    bar = tqdm(total=cfg.outer_steps, initial=trainer.step, desc=f"meta-train {family.name}",
               disable=not progress or trainer.rank != 0, leave=False, mininterval=2.0)
    window = trainer.window
    try:
        while trainer.step < stop:
            t0 = time.perf_counter()
            loss = trainer.outer_step()
            trainer.seconds += time.perf_counter() - t0
            window.append(loss)
            if len(window) == HISTORY_EVERY:
                trainer.history.append(round(sum(window) / len(window), 6))
                window.clear()
                bar.set_postfix(loss=f"{trainer.history[-1]:.4f}")
                if writer is not None:
                    writer.add_scalar("meta/loss_before_adaptation", trainer.history[-1],
                                      trainer.step)
            bar.update(1)
            if checkpoint is not None and trainer.step % cfg.checkpoint_every == 0:
                trainer.save(checkpoint)
    except KeyboardInterrupt:
        if checkpoint is not None:
            trainer.save(checkpoint)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if checkpoint is not None:
        trainer.save(checkpoint)
    dist_utils.barrier()  # no rank may reuse the checkpoint before rank 0 has written it
    prior = trainer.snapshot()
    if shift_prior and trainer.step >= cfg.outer_steps:
        attach_shift_prior(prior, family, seed=seed)
    return prior
