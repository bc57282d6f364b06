"""What a speed figure was measured on: the CPU's model and its vector extensions."""

from __future__ import annotations

import platform
from pathlib import Path

# The extensions that decide how fast the inner loops and BLAS run, widest last.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_description() -> str:
    """e.g. "Intel(R) Xeon(R) ... (avx2, fma, avx512f)"; the platform string off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    vector = [f for f in VECTOR_FLAGS if f in flags]
    return f"{fields.get('model name', platform.machine())} ({', '.join(vector) or 'no AVX'})"
