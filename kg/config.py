"""Small helpers shared by kgrec's configuration dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

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
