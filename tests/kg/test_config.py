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


def test_training_leaves_the_callers_torch_threads_as_they_were():
    """kg.train.train runs with ``config.threads`` and restores the caller's setting (a library
    call must not change its caller's torch threads for good); the result says how many ran."""
    import numpy as np

    from kg.split import Split
    from kg.train import TrainConfig, build_model, train

    rng = np.random.default_rng(0)
    pairs = (rng.integers(0, 20, 200), rng.integers(0, 30, 200))
    split = Split(20, 30, pairs, (pairs[0][:20], pairs[1][:20]), (pairs[0][:20], pairs[1][:20]))
    config = TrainConfig(model="bpr_mf", embedding_dim=8, epochs=1, eval_every=1, batch_size=64, threads=1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = train(build_model(config, (20, 30), split), split, config, progress=False)
        assert result.threads == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
