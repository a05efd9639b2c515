"""Metrics of the value models, as the ZILN paper's reference code defines them
(github.com/google/lifetime_value, ``metrics.py``): the normalized Gini of the gain curve,
Spearman's rank correlation, decile calibration (MAPE of the mean per decile of the
prediction), plus AUC (P(active), loyalty) and top-decile capture (product potential).
Plain numpy / pandas; every function takes 1-D arrays of equal length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _cumulative_true(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Share of the total true value held by the top 1, 2, ... rows ranked by ``y_pred``
    (the gain curve; ties keep their input order, as the reference's stable sort)."""
    order = np.argsort(-np.asarray(y_pred, dtype=np.float64), kind="stable")
    y = np.asarray(y_true, dtype=np.float64)[order]
    return np.cumsum(y) / y.sum()


def gini(y_true, y_pred) -> float:
    """The raw Gini of the gain curve: ``2 * mean(gain) - 1``."""
    return float(2 * _cumulative_true(y_true, y_pred).mean() - 1)


def normalized_gini(y_true, y_pred) -> float:
    """Gini of the model's gain curve over the Gini of the perfect ranking (1 = perfect,
    0 = random); NaN when every true value is zero."""
    y = np.asarray(y_true, dtype=np.float64)
    if not len(y) or y.sum() <= 0:
        return float("nan")
    perfect = gini(y, y)
    return gini(y, y_pred) / perfect if perfect else float("nan")


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either is constant."""
    a = pd.Series(np.asarray(a, dtype=np.float64)).rank()
    b = pd.Series(np.asarray(b, dtype=np.float64)).rank()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank().to_numpy()
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def decile_table(y_true, y_pred) -> pd.DataFrame:
    """Per decile of the prediction (0 = lowest): the mean true and predicted value and
    ``decile_mape`` = |pred - true| / true. Deciles are equal-sized groups of the rows
    ranked by the prediction (ties in input order: ``pd.qcut`` of the reference would
    fail on a prediction with many equal values, such as a last-period spend of 0)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    n = len(y_true)
    order = np.argsort(y_pred, kind="stable")
    decile = np.empty(n, dtype=np.int64)
    decile[order] = (np.arange(n) * 10) // max(n, 1)
    frame = pd.DataFrame({"y_true": y_true, "y_pred": y_pred, "decile": decile}).groupby("decile").mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["decile_mape"] = np.abs(frame["y_pred"] - frame["y_true"]) / frame["y_true"]
    return frame


def decile_mape(y_true, y_pred) -> float:
    """Mean decile MAPE over the deciles whose mean true value is positive (the others
    divide by zero); NaN when none is."""
    mape = decile_table(y_true, y_pred)["decile_mape"]
    mape = mape[np.isfinite(mape)]
    return float(mape.mean()) if len(mape) else float("nan")


def top_decile_capture(y_true, y_pred) -> float:
    """Share of the total true value held by the top 10% of rows by ``y_pred``."""
    y = np.asarray(y_true, dtype=np.float64)
    if not len(y) or y.sum() <= 0:
        return float("nan")
    k = max(1, int(np.ceil(len(y) / 10)))
    return float(_cumulative_true(y, y_pred)[k - 1])


def value_metrics(y_true, y_pred, p_active=None) -> dict[str, float]:
    """The LTV row of a report: normalized Gini, Spearman, decile MAPE, and the AUC of
    ``p_active`` (default: the prediction itself) for ``y_true > 0``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    score = y_pred if p_active is None else p_active
    return {"gini": normalized_gini(y_true, y_pred), "spearman": spearman(y_true, y_pred),
            "decile_mape": decile_mape(y_true, y_pred), "auc": auc(y_true > 0, score)}
