"""A compiled CPU inner loop for the default network, used by `adapt_batched` when it applies.

On CPU the batched inner loop spends most of its time in `bmm` of tiny matrices (10 x 32 x 32),
which run far below the core's speed. `csrc/adapt_cpu.cpp` instead interleaves 16 tasks across
the lanes of a SIMD vector, so each multiply-add of the per-task algorithm is one vector
instruction for 16 tasks, and runs a group's whole inner loop with its weights in the core's L2;
the few tasks left over run one at a time with their weights in L1 (BO adapts one task). It
covers the default architecture (d -> 32 -> 32 -> 32 -> 1, d <= 6), SGD, float32 and
minibatches of at most 64 points. It is built on first use with `torch.utils.cpp_extension` (a
C++ compiler and ninja) into `~/.cache/metaprior` (or `$METAPRIOR_CACHE`), then imported from
there, and computes the same steps as the Python path to about 1e-7 (its tanh is a rational
approximation, max error 3.4e-7).

If anything is missing, the build fails or `METAPRIOR_CPU_KERNEL=0` is set, `adapt_batched`
uses the Python path; a failed build warns once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

HIDDEN = 32  # the compiled width, three hidden layers
MAX_DIM = 6
MAX_BATCH = 64
CSRC = Path(__file__).parent / "csrc"
SOURCE = CSRC / "adapt_cpu.cpp"  # includes the headers next to it
# -ffast-math: see is_finite in the source; 512-bit vectors fit the 32-wide rows (+5% measured).
FLAGS = ["-O3", "-march=native", "-ffast-math", "-mprefer-vector-width=512"]

_module = None
_tried = False


def enabled() -> bool:
    return os.environ.get("METAPRIOR_CPU_KERNEL", "1") != "0"


def build_tag() -> str:
    """Hash of everything the binary depends on: sources, flags, torch and Python versions."""
    h = hashlib.sha256()
    for path in sorted(CSRC.glob("*.[ch]*")):
        h.update(path.name.encode() + path.read_bytes())
    h.update(" ".join(FLAGS + [torch.__version__, sys.version]).encode())
    return h.hexdigest()[:16]


def build_dir() -> Path:
    root = os.environ.get("METAPRIOR_CACHE") or Path.home() / ".cache" / "metaprior"
    return Path(root) / f"adapt_cpu-{build_tag()}"


def load():
    """The compiled extension, or None: imported if built, else built once (cached on disk)."""
    global _module, _tried
    if _tried:
        return _module
    _tried = True
    name = f"metaprior_adapt_cpu_{build_tag()}"
    directory = build_dir()
    try:
        _module = _import_built(name, directory) or _build(name, directory)
    except Exception as e:  # no compiler, no ninja, a failed build: the Python path still works
        warnings.warn(f"metaprior: compiled CPU inner loop unavailable, using the PyTorch one "
                      f"({type(e).__name__}: {str(e)[:200]})", RuntimeWarning, stacklevel=3)
        _module = None
    return _module


def _build(name: str, directory: Path):
    """Compile in a private directory, then move the library into the cache atomically.

    torch's own build lock is a file that a killed build leaves behind, and every later build
    then waits on it forever; private directories need no lock (concurrent first builds each
    compile, and the last rename wins with an identical file).
    """
    _put_ninja_on_path()
    from torch.utils.cpp_extension import load as load_extension

    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=directory))
    try:
        module = load_extension(name, [str(SOURCE)], extra_cflags=FLAGS,
                                build_directory=str(tmp), verbose=False)
        for lib in tmp.glob(f"{name}*.so"):
            os.replace(lib, directory / lib.name)
        return module
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _put_ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the `ninja` package (a BoTorch dependency) installs it next
    to the interpreter, which is not on PATH when a venv's python is called directly."""
    try:
        import ninja
    except ImportError:
        return
    path = os.environ.get("PATH", "")
    if ninja.BIN_DIR not in path.split(os.pathsep):
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path


def _import_built(name: str, directory: Path):
    """Import an already-built extension without torch's build step (and its lock)."""
    built = sorted(directory.glob(f"{name}*.so"))
    if not built:
        return None
    spec = importlib.util.spec_from_file_location(name, built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def applies(params: list[Tensor], X: Tensor, batch_size: int, optimizer: str) -> bool:
    """Whether the compiled loop covers this call (and is enabled)."""
    return (enabled() and optimizer == "sgd" and X.device.type == "cpu"
            and X.dtype == torch.float32 and 1 <= X.shape[-1] <= MAX_DIM
            and batch_size <= MAX_BATCH and len(params) == 8
            and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
            and [p.shape[1] for p in params[0:6:2]] == [HIDDEN] * 3)


def adapt_sgd_(params: list[Tensor], X: Tensor, Y: Tensor, full_weights: Tensor, idx: Tensor,
               weights: Tensor, lr: float, max_grad_norm: float) -> Tensor | None:
    """Run the SGD steps in place on `params`; None if the extension is unavailable.

    Args:
        params: 8 stacked weight tensors (B leading), float32, updated in place.
        X: `B x n x d` inputs, Y: `B x n` targets (float32).
        full_weights: `B x n` loss weights of all points (mask over count).
        idx: `B x steps x m` point indices of every minibatch.
        weights: `B x steps x m` per-point loss weights (0 for padding).
        lr, max_grad_norm: step size and per-task gradient-norm clip.

    Returns:
        The `B` losses on all points before the first step.
    """
    module = load()
    if module is None:
        return None
    work = [p.contiguous() for p in params]
    loss0 = module.adapt_sgd(work, X.contiguous(), Y.contiguous(), full_weights.contiguous(),
                             idx.contiguous(), weights.contiguous(), float(lr),
                             float(max_grad_norm))
    for p, w in zip(params, work, strict=True):
        if w is not p:
            p.copy_(w)
    return loss0
