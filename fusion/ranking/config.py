"""The fusion stage's settings: :class:`FusionConfig` (saved in the ``fusion`` section of ``run.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fusion.ranking.examples import ExampleConfig
from fusion.ranking.model import TASKS, input_groups
from kg.config import checked_fields
from kg.errors import ConfigError


@dataclass(frozen=True)
class FusionConfig:
    """Everything that defines a fusion training run (JSON round-trip)."""

    esmm: bool = True                     #: False: CVR fit on clicked examples only (baseline)
    balancing: str = "fixed"              #: "fixed" | "uncertainty" | "gradnorm"
    task_weights: dict[str, float] = field(default_factory=lambda: {
        "ctr": 1.0, "cvr": 1.0, "value": 0.2, "relevance": 1.0})  #: for "fixed"
    num_experts: int = 1                  #: 1 = shared-bottom, > 1 = MMoE with this many experts
    hidden: int = 64
    text_proj: int = 32
    tower: int = 32
    dropout: float = 0.1
    raw_gnn: bool = False                 #: raw GNN vectors as inputs (else only their product)
    without: tuple[str, ...] = ()         #: input groups left out, an ablation: "gnn", "text", "side"
    candidates: int = 100                 #: recommendation: re-rank the GNN's top-N (0: all products)
    candidate_negatives: int = 4          #: per conversion: negatives drawn from the user's GNN top-N
    lr: float = 2e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024
    relevance_batch_size: int = 256
    relevance_negatives: int = 4          #: random products per judged pair (their grade, 0 if unjudged)
    epochs: int = 30
    min_steps_per_epoch: int = 50         #: an epoch is one pass, or this many steps (small data wraps)
    patience: int = 3                     #: epochs without a better validation mix
    max_seconds: float | None = None
    train_on: str = "auto"                #: "valid" | "train" | "auto" (see fit_and_check)
    min_valid_conversions: int = 300      #: "auto": fit on the validation period from this many
    end_to_end: bool = False              #: also train the embedding tables
    embedding_lr: float = 1e-3
    seed: int = 0
    members: int = 5                      #: the fusion stage trains seeds seed .. seed+members-1 and
                                          #: averages their logits (train_fusion trains one); five
                                          #: seeds are a cross-fitted ensemble (FusionEnsemble)
    device: str = "auto"
    threads: int | str | None = "auto"   #: torch CPU threads ("auto": the cores free now; None: as is)
    examples: ExampleConfig = field(default_factory=ExampleConfig)

    def __post_init__(self):
        if isinstance(self.examples, dict):
            object.__setattr__(self, "examples", ExampleConfig.from_dict(self.examples))
        object.__setattr__(self, "without", input_groups(self.without))
        if self.train_on not in ("valid", "train", "auto"):
            raise ConfigError(f"train_on must be 'valid', 'train' or 'auto', not {self.train_on!r}")
        if self.members < 1:
            raise ConfigError(f"members must be at least 1, not {self.members}")
        if self.members > 1 and self.end_to_end:
            raise ConfigError("members > 1 needs end_to_end=False (the members share the feature tables)")
        if self.balancing not in ("fixed", "uncertainty", "gradnorm"):
            raise ConfigError(f"unknown balancing {self.balancing!r} (fixed, uncertainty, gradnorm)")
        unknown = set(self.task_weights) - set(TASKS)
        if unknown:
            raise ConfigError(f"task_weights: unknown tasks {sorted(unknown)} ({', '.join(TASKS)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FusionConfig:
        return cls(**checked_fields(cls, values))

    def model_kwargs(self) -> dict[str, Any]:
        return {"text_proj": self.text_proj, "hidden": self.hidden, "num_experts": self.num_experts,
                "tower": self.tower, "dropout": self.dropout, "raw_gnn": self.raw_gnn,
                "without": self.without}
