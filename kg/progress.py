"""Progress lines of the training stages: the estimate of the time left."""

from __future__ import annotations


def time_left(elapsed: float, done: int, remaining: int) -> str:
    """``"~1m20s left at most"``: the time per unit so far times the units remaining
    (early stopping can end sooner)."""
    if done <= 0:
        return "estimating the time left"
    seconds = elapsed / done * max(remaining, 0)
    return f"~{int(seconds // 60)}m{int(seconds % 60):02d}s left at most"
