"""Baselines the value models are measured against.

* **BG/NBD + Gamma-Gamma** (:func:`bgnbd_gamma_gamma`): the classic probabilistic
  customer-lifetime-value pair, from PyMC-Marketing (``pymc_marketing.clv``), fit by MAP.
  BG/NBD (Fader, Hardie & Lee 2005) gives each customer's expected purchases over the
  horizon and P(no purchase); Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV") their
  expected spend per purchase. Expected spend = their product. It needs the optional extra
  ``pip install -e .[clv]``.
* **Last-period spend / sales** and the **category mean**: columns of the model tables
  (:mod:`fusion.value.ltv`, :mod:`fusion.value.potential`).
* **Past brand share**: a column of the loyalty table (:mod:`fusion.value.loyalty`).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd

from fusion.value.temporal import DAY, Activity
from kg.errors import ConfigError, DataError

CLV_EXTRA = "pip install -e .[clv]"


def clv_available() -> bool:
    """Whether PyMC-Marketing (the ``clv`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("pymc_marketing") is not None


def bgnbd_gamma_gamma(activity: Activity, cutoff: int, horizon: int, users: np.ndarray) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma predictions for the user indices ``users`` from the purchases at
    or before ``cutoff``: ``ltv`` (expected spend over the horizon), ``p_active``
    (1 - P(no purchase)) and ``seconds`` / ``cpu_seconds`` (the fit, in ``attrs``). Users without a purchase
    get 0 (the models describe customers). Time is counted in days."""
    if not clv_available():
        raise ConfigError(f"BG/NBD + Gamma-Gamma needs PyMC-Marketing: {CLV_EXTRA}")
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("pymc", "pytensor", "pymc_marketing", "pymc_extras"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel, rfm_summary

        past = activity.purchases[activity.purchases["t"] <= cutoff]
        if not len(past):
            raise DataError("BG/NBD: no purchases before the cut-off")
        tx = pd.DataFrame({"customer_id": past["u"].to_numpy(), "date": pd.to_datetime(past["t"], unit="s"),
                           "spend": past["spend"].to_numpy()})
        rfm = rfm_summary(tx, "customer_id", "date", "spend",
                          observation_period_end=pd.Timestamp(int(cutoff), unit="s"), time_unit="D")
        rfm["T"] = rfm["T"].clip(lower=1.0)  # a first purchase on the cut-off day: one day of exposure
        rfm["recency"] = np.minimum(rfm["recency"], rfm["T"])
        bg = BetaGeoModel(data=rfm[["customer_id", "frequency", "recency", "T"]])
        bg.fit(method="map", progressbar=False)
        h = horizon / DAY
        data = rfm[["customer_id", "frequency", "recency", "T"]]
        purchases = np.asarray(bg.expected_purchases(data=data, future_t=h).values).reshape(-1)
        p_none = np.asarray(bg.expected_probability_no_purchase(t=h, data=data).values).reshape(-1)
        repeat = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
        if len(repeat) >= 2:
            gg = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
            gg.fit(method="map", progressbar=False)
            spend = np.asarray(gg.expected_customer_spend(
                data=rfm[["customer_id", "frequency", "monetary_value"]]).values).reshape(-1)
        else:  # too few repeat customers for Gamma-Gamma: the mean spend per purchase
            spend = np.full(len(rfm), float(past["spend"].mean()))
    out = pd.DataFrame({"ltv": purchases * spend, "p_active": 1.0 - p_none}, index=rfm["customer_id"].to_numpy())
    out = out.reindex(np.asarray(users)).fillna(0.0)
    out.attrs["seconds"] = time.perf_counter() - start
    out.attrs["cpu_seconds"] = time.process_time() - cpu
    return out.reset_index(drop=True)
