"""Thread choice from the cores that are free."""

from __future__ import annotations

import pytest
import torch

import kg.config as config
from kg.config import resolve_threads, torch_threads, usable_cores
from kg.errors import ConfigError


@pytest.mark.parametrize("others, cores, want", [(0.0, 2, 2), (0.4, 2, 2), (0.7, 2, 1), (1.0, 2, 1), (5.0, 2, 1),
                                                 (0.0, 16, 16), (3.2, 16, 13)])
def test_auto_threads_are_the_cores_others_leave_free(monkeypatch, others, cores, want):
    monkeypatch.setattr(config, "busy_cores_of_others", lambda window=0.2: others)
    monkeypatch.setattr(config, "usable_cores", lambda: cores)
    assert resolve_threads("auto") == want


def test_resolve_threads_and_the_context_manager():
    assert resolve_threads(3) == 3 and resolve_threads(None) is None
    assert 1 <= resolve_threads("auto") <= usable_cores()
    with pytest.raises(ConfigError, match="threads must be"):
        resolve_threads("many")
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
