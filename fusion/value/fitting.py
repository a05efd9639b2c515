"""Fitting a value network on a feature table, and the fitted model as a folder.

:class:`TabularModel` is what the three value models share: the input columns, their
standardisation (mean / std of the training rows) and range (min / max of the training
rows: every later input is clipped into it), the largest training target (the bound of a
ZILN model's expected value, :meth:`fusion.value.ziln.ZILN.mean`), the network
(:class:`ZILN` or :class:`Classifier`) and how long it trained. :func:`fit_tabular` trains
one with Adam and early stopping on a validation table; with ``epochs`` given it trains
exactly that long and keeps the last state (the refit on every window, for serving).
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
    r"""A network over named feature columns, standardised with the training rows' stats
    and clipped to their range.

    **Inputs** (:meth:`matrix`): a row ``x`` [F] enters as

    .. math::
        \tilde x_j = \big(\mathrm{clip}(x_j,\ \mathrm{low}_j - w_j,\ \mathrm{high}_j + w_j) - \mathrm{mean}_j\big)
        / \mathrm{std}_j, \qquad w_j = \mathrm{high}_j - \mathrm{low}_j

    (a missing value is ``mean_j``), ``low`` / ``high`` the smallest / largest value of
    column j among the rows the model was fit on. A network says little outside the inputs
    it was fit on -- a ReLU MLP extrapolates linearly, and a ZILN model's
    :math:`e^{\mu + \sigma^2/2}` turns that into orders of magnitude (a burst of purchases
    years after the training data: 27 purchases valued at $134M, a purchase rate 900
    standard deviations above any training customer's) -- so a feature is read at most one
    range width beyond the training range. The margin keeps the mild extrapolation that
    serving needs anyway (a customer's tenure and recency at the next cut-off lie a horizon
    past the training windows': clipping them at the range itself cost the test windows'
    decile calibration, MAPE 0.458 -> 0.518) and stops the wild one. The range is saved with
    the model and used at every later prediction (serving tables after ``kgrec update``
    included), whatever the data has become since.

    A model saved before the range was (``low`` / ``high`` None) is clipped to the
    Samuelson bound :math:`\mathrm{mean}_j \pm \mathrm{std}_j \sqrt{n - 1}` (``n`` =
    ``info["rows"]``), which holds every one of ``n`` values of mean ``mean_j`` and
    (population) deviation ``std_j``: wider than the range, derived from what such a model
    saved; no clipping when ``n`` is unknown.

    ``target_max`` (ZILN models; None for a classifier or an older model): the largest
    training target, the cap of :meth:`fusion.value.ziln.ZILN.mean`.
    """

    kind: str                 #: "ziln" | "classifier"
    columns: list[str]
    mean: np.ndarray          # [F]
    std: np.ndarray           # [F]
    net: torch.nn.Module
    hyper: dict = field(default_factory=dict)    #: hidden, layers, dropout
    info: dict = field(default_factory=dict)     #: epochs, seconds, rows, ...
    low: np.ndarray | None = None                # [F] the training rows' min per column (None: an older model)
    high: np.ndarray | None = None               # [F] their max
    target_max: float | None = None              #: the largest training target (ZILN)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """([F] low, [F] high): the range inputs are clipped to (class docstring)."""
        if self.low is not None and self.high is not None:
            width = self.high - self.low
            return self.low - width, self.high + width
        n = int(self.info.get("rows") or 0)
        if n < 1:
            return np.full(len(self.columns), -np.inf), np.full(len(self.columns), np.inf)
        spread = self.std * np.sqrt(n - 1)
        return self.mean - spread, self.mean + spread

    def outside(self, frame: pd.DataFrame) -> np.ndarray:
        """bool [n]: the rows of ``frame`` with a (finite) input outside :meth:`bounds` --
        the ones :meth:`matrix` clips."""
        x = frame[self.columns].to_numpy(dtype=np.float64)
        low, high = self.bounds()
        return (np.isfinite(x) & ((x < low) | (x > high))).any(axis=1)

    def matrix(self, frame: pd.DataFrame) -> torch.Tensor:
        """[n, F] standardised inputs of ``frame``'s rows, clipped to the training range
        (class docstring; missing values are the mean)."""
        x = frame[self.columns].to_numpy(dtype=np.float64)
        x = np.where(np.isfinite(x), x, self.mean)
        x = np.clip(x, *self.bounds())
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
            **({} if self.low is None or self.high is None else {"low": self.low.tolist(), "high": self.high.tolist()}),
            **({} if self.target_max is None else {"target_max": self.target_max}),
            "hyper": self.hyper, "info": self.info}, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TabularModel:
        """The model :meth:`save` wrote to ``folder`` (one saved before the training range
        and target bound existed loads with ``low`` / ``high`` / ``target_max`` None)."""
        folder = Path(folder)
        c = json.loads((folder / "config.json").read_text())
        net = NETS[c["kind"]](len(c["columns"]), **c["hyper"])
        net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        net.eval()
        low, high = c.get("low"), c.get("high")
        return cls(c["kind"], list(c["columns"]), np.asarray(c["mean"]), np.asarray(c["std"]), net, c["hyper"],
                   c.get("info", {}), None if low is None else np.asarray(low, dtype=np.float64),
                   None if high is None else np.asarray(high, dtype=np.float64),
                   None if c.get("target_max") is None else float(c["target_max"]))


def fit_tabular(kind: str, train: pd.DataFrame, y_train: np.ndarray, valid: pd.DataFrame | None,
                y_valid: np.ndarray | None, columns: list[str], *, hidden: int, layers: int, dropout: float,
                lr: float, weight_decay: float, batch_size: int, epochs: int, patience: int, seed: int,
                members: int = 1, fixed_epochs: int | None = None) -> TabularModel:
    """Train a :class:`TabularModel` of ``kind`` on ``train`` (targets ``y_train``):
    at most ``epochs`` passes in mini-batches, keeping the state with the best validation
    loss and stopping after ``patience`` passes without one; ``fixed_epochs``: exactly
    that many passes, no validation (the refit). The model keeps the range of each column
    of ``train`` (min / max of its finite values; the mean where none is) and, for a ZILN
    model, the largest target (:class:`TabularModel`)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = train[columns].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    mean = np.array([x[finite[:, j], j].mean() if finite[:, j].any() else 0.0 for j in range(x.shape[1])])
    std = np.array([x[finite[:, j], j].std() if finite[:, j].any() else 1.0 for j in range(x.shape[1])])
    std = np.where(std > 1e-9, std, 1.0)
    low = np.array([x[finite[:, j], j].min() if finite[:, j].any() else mean[j] for j in range(x.shape[1])])
    high = np.array([x[finite[:, j], j].max() if finite[:, j].any() else mean[j] for j in range(x.shape[1])])
    y_np = np.asarray(y_train, dtype=np.float64)
    target_max = (float(y_np.max()) if len(y_np) else 0.0) if kind == "ziln" else None
    hyper = {"hidden": hidden, "layers": layers, "dropout": dropout, **({"members": members} if members > 1 else {})}
    model = TabularModel(kind, list(columns), mean, std, NETS[kind](len(columns), **hyper), hyper,
                         low=low, high=high, target_max=target_max)
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
