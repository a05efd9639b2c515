"""Fitting a value network on a feature table, and the fitted model as a folder.

:class:`TabularModel` is what the three value models share: the input columns, their
standardisation (mean / std of the training rows), the network (:class:`ZILN` or
:class:`Classifier`) and how long it trained. :func:`fit_tabular` trains one with Adam and
early stopping on a validation table; with ``epochs`` given it trains exactly that long
and keeps the last state (the refit on every window, for serving).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fusion.value.classifier import Classifier
from fusion.value.ziln import ZILN
from kg.run_dir import save_torch, write_text

NETS = {"ziln": ZILN, "classifier": Classifier}


@dataclass
class TabularModel:
    """A network over named feature columns (standardised with the training rows' stats)."""

    kind: str                 #: "ziln" | "classifier"
    columns: list[str]
    mean: np.ndarray          # [F]
    std: np.ndarray           # [F]
    net: torch.nn.Module
    hyper: dict = field(default_factory=dict)    #: hidden, layers, dropout
    info: dict = field(default_factory=dict)     #: epochs, seconds, rows, ...

    def matrix(self, frame: pd.DataFrame) -> torch.Tensor:
        """[n, F] standardised inputs of ``frame``'s rows (missing values are the mean)."""
        x = frame[self.columns].to_numpy(dtype=np.float64)
        x = np.where(np.isfinite(x), x, self.mean)
        return torch.from_numpy((x - self.mean) / self.std).float()

    @torch.no_grad()
    def outputs(self, frame: pd.DataFrame) -> torch.Tensor:
        """The network's raw outputs for ``frame`` ([n, 3] ZILN, [n] logits)."""
        self.net.eval()
        return self.net(self.matrix(frame))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        save_torch(self.net.state_dict(), folder / "model.pt")
        write_text(folder / "config.json", json.dumps({
            "kind": self.kind, "columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist(),
            "hyper": self.hyper, "info": self.info}, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TabularModel:
        folder = Path(folder)
        c = json.loads((folder / "config.json").read_text())
        net = NETS[c["kind"]](len(c["columns"]), **c["hyper"])
        net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        net.eval()
        return cls(c["kind"], list(c["columns"]), np.asarray(c["mean"]), np.asarray(c["std"]), net, c["hyper"],
                   c.get("info", {}))


def fit_tabular(kind: str, train: pd.DataFrame, y_train: np.ndarray, valid: pd.DataFrame | None,
                y_valid: np.ndarray | None, columns: list[str], *, hidden: int, layers: int, dropout: float,
                lr: float, weight_decay: float, batch_size: int, epochs: int, patience: int, seed: int,
                members: int = 1, fixed_epochs: int | None = None) -> TabularModel:
    """Train a :class:`TabularModel` of ``kind`` on ``train`` (targets ``y_train``):
    at most ``epochs`` passes in mini-batches, keeping the state with the best validation
    loss and stopping after ``patience`` passes without one; ``fixed_epochs``: exactly
    that many passes, no validation (the refit)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = train[columns].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    mean = np.array([x[finite[:, j], j].mean() if finite[:, j].any() else 0.0 for j in range(x.shape[1])])
    std = np.array([x[finite[:, j], j].std() if finite[:, j].any() else 1.0 for j in range(x.shape[1])])
    std = np.where(std > 1e-9, std, 1.0)
    hyper = {"hidden": hidden, "layers": layers, "dropout": dropout, **({"members": members} if members > 1 else {})}
    model = TabularModel(kind, list(columns), mean, std, NETS[kind](len(columns), **hyper), hyper)
    net = model.net
    xt, yt = model.matrix(train), torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    net.init_output(yt)
    xv = model.matrix(valid) if valid is not None and fixed_epochs is None else None
    yv = torch.from_numpy(np.asarray(y_valid, dtype=np.float32)) if xv is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch, waited = np.inf, None, 0, 0
    history = []
    n = len(yt)
    for epoch in range(1, (fixed_epochs or epochs) + 1):
        net.train()
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for s in range(0, n, batch_size):
            rows = order[s: s + batch_size]
            loss = net.loss(net(xt[rows]), yt[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        entry = {"epoch": epoch, "train_loss": total / max(n, 1)}
        if xv is not None and len(yv):
            net.eval()
            with torch.no_grad():
                v = float(net.loss(net(xv), yv))
            entry["valid_loss"] = v
            if v < best - 1e-5:
                best, best_epoch, waited = v, epoch, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                waited += 1
            if waited >= patience:
                history.append(entry)
                break
        history.append(entry)
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    net.eval()
    model.info = {"epochs": best_epoch, "ran": len(history), "rows": n, "valid_loss": None if best == np.inf else best,
                  "seconds": round(time.perf_counter() - start, 3)}
    return model
