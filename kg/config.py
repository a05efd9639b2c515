"""Small helpers shared by kgrec's configuration dataclasses."""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any, Iterator

from kg.errors import ConfigError


def checked_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` unchanged, after checking every key is a field of dataclass ``cls``."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return values


def resolve_device(name: str):
    """``"auto"`` -> cuda when available, else cpu; anything else as ``torch.device(name)``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_threads(threads: int | str | None) -> int | None:
    """Torch CPU threads to use: an int as given; ``"auto"`` the cores not kept busy by
    *other* processes now (:func:`busy_cores_of_others`), at least 1 -- on a busy 2-core
    machine a second thread that waits for a descheduled core makes every parallel op
    slower (the KG model took 17-20 s an epoch instead of ~1 s); ``None``: leave torch's
    setting."""
    if threads is None or isinstance(threads, int):
        return threads
    if threads != "auto":
        raise ConfigError(f"threads must be a number or 'auto', not {threads!r}")
    cores = usable_cores()
    return max(1, min(cores, int(cores - busy_cores_of_others() + 0.5)))


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores_of_others(window: float = 0.2) -> float:
    """How many cores other processes keep busy: the machine's busy CPU time over
    ``window`` seconds (``/proc/stat``) minus this process's own, per second. Where
    ``/proc/stat`` is unreadable, the 1-minute load average (which counts this process
    too)."""
    import os
    import time

    def machine_busy() -> float:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    try:
        busy0, own0, t0 = machine_busy(), sum(os.times()[:2]), time.perf_counter()
        time.sleep(window)
        busy1, own1, t1 = machine_busy(), sum(os.times()[:2]), time.perf_counter()
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


@contextlib.contextmanager
def torch_threads(threads: int | str | None) -> Iterator[int]:
    """Torch CPU threads set to :func:`resolve_threads` (``threads``) inside the block only;
    yields the number in use."""
    import torch

    previous = torch.get_num_threads()
    n = resolve_threads(threads)
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
