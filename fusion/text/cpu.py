"""What this CPU computes natively, as the kernel reports it (the precision choices of the
text encoder depend on it: :func:`fusion.text.encoder.native_bf16`,
:func:`fusion.text.int8_linear.weight_bits`)."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU in Linux's ``/proc/cpuinfo`` (e.g.
    ``avx2``, ``avx512_vnni``, ``amx_bf16``); empty where it cannot be read (another OS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()
