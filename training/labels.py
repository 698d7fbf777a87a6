"""Labels: default = 90+ days past due within 12 months, known only once the window has closed.

An application gets a label iff its outcome window has closed by `as_of`
(`applied_at + window <= as_of`) and its outcome was observed by then. Defaults are often seen
months before the window closes, but labelling them early while the non-defaults of the same months
are still open would make recent months look far riskier than they are, so they wait like the rest.
"now" is the data's own clock (the latest application or outcome on record), not the wall clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LabelReport:
    """How many applications got a label as of `as_of`, and why the others did not."""

    as_of: str
    horizon: str  # applications before this instant have a closed window
    window_days: int
    applications: int
    labelled: int
    defaults: int
    window_open: int
    closed_without_outcome: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def utc(values: Any) -> pd.Series:
    """A timestamp column as tz-aware UTC."""
    return pd.Series(pd.to_datetime(values, utc=True))


def data_as_of(applications: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Timestamp:
    """The data's "now": the latest application or observed outcome on record."""
    stamps = [utc(applications["applied_at"]).max(), utc(outcomes["observed_at"]).max()]
    known = [s for s in stamps if not pd.isna(s)]
    if not known:
        raise ValueError("no applications or outcomes on record: nothing to date the data by")
    return pd.Timestamp(max(known))


def label_horizon(as_of: pd.Timestamp, window_days: int) -> pd.Timestamp:
    """Applications strictly before this instant have a closed outcome window."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=window_days)


def label_applications(
    applications: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    window_days: int = 365,
) -> tuple[pd.DataFrame, LabelReport]:
    """Labelled applications (application columns + `defaulted` 0/1), in `applied_at` order."""
    apps = applications.copy()
    apps["applied_at"] = utc(apps["applied_at"])
    known = outcomes.loc[utc(outcomes["observed_at"]) <= as_of, ["application_id", "defaulted"]]
    known = known.drop_duplicates("application_id", keep="last")
    horizon = label_horizon(as_of, window_days)
    closed = (apps["applied_at"] + pd.Timedelta(days=window_days)) <= as_of
    merged = apps.merge(known, on="application_id", how="left")
    has_outcome = merged["defaulted"].notna().to_numpy()
    keep = closed.to_numpy() & has_outcome
    labelled = merged.loc[keep].copy()
    labelled["defaulted"] = labelled["defaulted"].astype(bool).astype(np.int64)
    labelled = labelled.sort_values(["applied_at", "application_id"], kind="stable").reset_index(drop=True)
    report = LabelReport(
        as_of=pd.Timestamp(as_of).isoformat(),
        horizon=horizon.isoformat(),
        window_days=window_days,
        applications=len(apps),
        labelled=len(labelled),
        defaults=int(labelled["defaulted"].sum()),
        window_open=int((~closed).sum()),
        closed_without_outcome=int((closed.to_numpy() & ~has_outcome).sum()),
    )
    return labelled, report
