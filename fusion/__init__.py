"""Text encoder, fusion model and the Engine (``from fusion import Engine``)."""

from fusion.engine import Engine, Recommendation

__all__ = ["Engine", "Recommendation"]
