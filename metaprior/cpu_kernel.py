"""A compiled CPU inner loop for the default network, used by `adapt_batched` when it applies.

On CPU the batched inner loop spends most of its time in `bmm` of tiny matrices (10 x 32 x 32),
which run far below the core's speed. `csrc/adapt_cpu.cpp` instead interleaves tasks across
the lanes of a SIMD vector, so each multiply-add of the per-task algorithm is one vector
instruction for all of them, and runs a group's whole inner loop with its weights in the core's
L2; the few tasks left over run one at a time with their weights in L1 (BO adapts one task). It
covers the default architecture (d -> 32 -> 32 -> 32 -> 1, d <= 32), SGD, float32 and
minibatches of at most 64 points, and computes the same steps as the Python path to about 1e-7
(its tanh is a rational approximation, max error 3.4e-7).

**Variants.** The vector width and register tiles that make it fast depend on the instruction
set: 16 lanes and 5 x 4 tiles fill AVX-512's 32 registers but spill on AVX2's 16 (measured
there: ten times slower, and slower than PyTorch). So it is built once per variant, each a
separate extension with its own flags (`VARIANTS`), and `variant()` picks the widest one the
CPU runs; a CPU with neither (or not x86) uses the PyTorch loop, which beats a scalar build.
`METAPRIOR_CPU_VARIANT=auto|avx512|avx2|pytorch` forces one (a variant the CPU lacks falls back
to PyTorch with a warning); `METAPRIOR_CPU_KERNEL=0` is the same as `pytorch`.

**Threads.** Tasks are split over `torch.get_num_threads()` threads, or `METAPRIOR_CPU_THREADS`
where set: the loop can then use the cores while torch's own small tensor ops around it stay on
one thread (under load, OpenMP's barriers made those ops 7x slower on two threads than on one,
and they outweighed the loop at B = 1000).

Each variant is built on first use with `torch.utils.cpp_extension` (a C++ compiler and ninja;
40-90 s) into `~/.cache/metaprior` (or `$METAPRIOR_CACHE`), then imported from there. If
anything is missing or the build fails, `adapt_batched` uses the Python path; a failed build
warns once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

HIDDEN = 32  # the compiled width, three hidden layers
MAX_DIM = 32  # widths 1-6, 8, 12, 16, 24, 32 are compiled; the others run padded with zeros
MAX_BATCH = 64
CSRC = Path(__file__).parent / "csrc"
SOURCE = CSRC / "adapt_cpu.cpp"  # includes the headers next to it
# -ffast-math: see is_finite in the source. -mtune=native only schedules instructions for the
# build machine; the -m ISA flags decide what the library needs, and `variant()` checks the
# CPU has them, so a cache shared between machines never runs an instruction a CPU lacks.
COMMON_FLAGS = ["-O3", "-ffast-math", "-mtune=native"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One build of the compiled loop: its compiler flags and the CPU flags it needs."""

    flags: tuple[str, ...]
    needs: frozenset[str]  # names as in /proc/cpuinfo's flags line


# Widest first: `auto` takes the first one the CPU supports. Lanes and tiles follow from the
# flags (csrc/variants.h). 512-bit vectors also fit the per-task loop's 32-wide rows (+5%).
VARIANTS = {
    "avx512": Variant(("-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma",
                       "-mprefer-vector-width=512"),
                      frozenset({"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"})),
    "avx2": Variant(("-mavx2", "-mfma"), frozenset({"avx2", "fma"})),
}
CHOICES = ("auto", *VARIANTS, "pytorch")

_modules: dict[str, object] = {}  # variant -> extension, or None when it failed to build
_warned: set[str] = set()


@functools.cache  # read once: `applies` asks on every adaptation
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def supported() -> list[str]:
    """The variants this CPU runs, widest first."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    flags = cpu_flags()
    return [name for name, v in VARIANTS.items() if v.needs <= flags]


def variant() -> str:
    """The inner loop `adapt_batched` uses on CPU: a key of `VARIANTS`, or "pytorch"."""
    if os.environ.get("METAPRIOR_CPU_KERNEL", "1") == "0":
        return "pytorch"
    choice = os.environ.get("METAPRIOR_CPU_VARIANT", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"METAPRIOR_CPU_VARIANT={choice!r}: expected one of {CHOICES}")
    have = supported()
    if choice == "auto":
        return have[0] if have else "pytorch"
    if choice != "pytorch" and choice not in have:
        _warn_once(choice, f"metaprior: this CPU lacks {choice} "
                           f"({', '.join(sorted(VARIANTS[choice].needs))}); using the PyTorch "
                           f"inner loop")
        return "pytorch"
    return choice


def enabled() -> bool:
    return variant() != "pytorch"


def threads() -> int:
    """Threads the compiled loop splits its tasks over."""
    setting = os.environ.get("METAPRIOR_CPU_THREADS", "").strip()
    return max(1, int(setting)) if setting else torch.get_num_threads()


def flags(name: str) -> list[str]:
    return COMMON_FLAGS + list(VARIANTS[name].flags)


def build_tag(name: str | None = None) -> str:
    """Hash of everything the binary depends on: sources, flags, torch and Python versions."""
    name = name or variant()
    h = hashlib.sha256()
    for path in sorted(CSRC.glob("*.[ch]*")):
        h.update(path.name.encode() + path.read_bytes())
    h.update(" ".join(flags(name) + [torch.__version__, sys.version]).encode())
    return h.hexdigest()[:16]


def build_dir(name: str | None = None) -> Path:
    name = name or variant()
    root = os.environ.get("METAPRIOR_CACHE") or Path.home() / ".cache" / "metaprior"
    return Path(root) / f"adapt_cpu-{name}-{build_tag(name)}"


def load(name: str | None = None):
    """The compiled extension of a variant (default: `variant()`), or None: imported if built,
    else built once (cached on disk). None for "pytorch" and for variants the CPU lacks."""
    name = name or variant()
    if name not in supported():
        return None
    if name in _modules:
        return _modules[name]
    ext = f"metaprior_adapt_{name}_{build_tag(name)}"
    directory = build_dir(name)
    try:
        module = _import_built(ext, directory) or _build(ext, directory, flags(name))
    except Exception as e:  # no compiler, no ninja, a failed build: the Python path still works
        _warn_once(name, f"metaprior: compiled CPU inner loop ({name}) unavailable, using the "
                         f"PyTorch one ({type(e).__name__}: {str(e)[:200]})")
        module = None
    _modules[name] = module
    return module


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _build(name: str, directory: Path, cflags: list[str]):
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
        module = load_extension(name, [str(SOURCE)], extra_cflags=cflags,
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
    """Whether the compiled loop covers this call (and a variant of it is chosen)."""
    return (optimizer == "sgd" and X.device.type == "cpu"
            and X.dtype == torch.float32 and 1 <= X.shape[-1] <= MAX_DIM
            and batch_size <= MAX_BATCH and len(params) == 8
            and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
            and [p.shape[1] for p in params[0:6:2]] == [HIDDEN] * 3
            and enabled())


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
                             float(max_grad_norm), threads())
    for p, w in zip(params, work, strict=True):
        if w is not p:
            p.copy_(w)
    return loss0
