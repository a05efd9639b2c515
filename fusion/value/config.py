"""The value stage's settings: :class:`ValueConfig` (the ``value`` section of ``run.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kg.config import checked_fields
from kg.errors import ConfigError


@dataclass(frozen=True)
class ValueConfig:
    """Everything that defines a value training run (JSON round-trip).

    Time: targets are the horizon after a cut-off, features everything before it
    (:mod:`fusion.value.temporal`). ``horizon_days`` None picks an eighth of the data's
    time span (:func:`fusion.value.temporal.default_horizon`); ``test_cutoff`` None puts
    the test cut-off one horizon before the data's last event, validation one horizon
    before that, and up to ``train_windows`` training cut-offs one horizon apart before
    validation (those with at least ``min_history_days`` of data before them).
    """

    horizon_days: float | None = None    #: H; None: a eighth of the time span, in whole days
    test_cutoff: int | None = None       #: Unix seconds; None: the last event minus H
    train_windows: int = 3               #: training cut-offs (one H apart, before validation)
    min_history_days: float = 0.0        #: a training cut-off needs this much data before it (0: any)
    hidden: int = 32                     #: width of the hidden layers
    layers: int = 2                      #: hidden layers of each model
    dropout: float = 0.0
    members: int = 3                     #: MLPs averaged in each ZILN model (an ensemble trained side by side)
    embedding_dims: int = 8              #: PCA dimensions kept of the GNN and text blocks (0: none)
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 8192               #: rows per step (small data: the whole table)
    epochs: int = 1000                   #: at most; early stopping on the validation loss
    patience: int = 30                   #: epochs without a better validation loss
    refit: bool = True                   #: serve from models refit (same epochs) on every window
    loyalty_floor: float = 0.05          #: loyalty objective of a brand the user never bought
    clv_baseline: bool = False           #: BG/NBD + Gamma-Gamma in the stage's report (the clv extra)
    seed: int = 0
    threads: int | str | None = "auto"   #: torch CPU threads ("auto": the cores free now)

    def __post_init__(self):
        if self.horizon_days is not None and not self.horizon_days > 0:
            raise ConfigError(f"value: horizon_days must be > 0, not {self.horizon_days!r}")
        for name in ("train_windows", "hidden", "layers", "batch_size", "epochs", "members"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"value: {name} must be >= 1, not {getattr(self, name)!r}")
        if not 0 < self.loyalty_floor < 1:
            raise ConfigError(f"value: loyalty_floor must be in (0, 1), not {self.loyalty_floor!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ValueConfig:
        return cls(**checked_fields(cls, values))
