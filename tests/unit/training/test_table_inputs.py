"""The table checks: every exclusion counted with its reason, every refusal one actionable line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.lender_table import lender_table, write_lender_table
from training.datasets import table_training_set
from training.table_inputs import (
    TableInputError,
    binary_label,
    missing_values,
    parse_times,
    require_columns,
    screen_columns,
)


def test_missing_column_names_the_option_and_the_closest_columns() -> None:
    with pytest.raises(TableInputError) as caught:
        require_columns(
            ["applied_on", "outcome", "income"], {"--label": ["outcom"], "--time": ["applied_on"]}, "t.csv"
        )
    message = str(caught.value)
    assert "--label 'outcom'" in message and "did you mean 'outcome'" in message
    assert "\n" not in message


def test_every_option_column_is_checked() -> None:
    with pytest.raises(TableInputError, match=r"--protected 'gendr'.*--keep 'zzz'"):
        require_columns(["gender"], {"--protected": ["gendr"], "--keep": ["zzz"]}, "t.csv")
    require_columns(["a", "b"], {"--label": ["a"], "--time": ["b"]}, "t.csv")  # all present: no error


def test_day_first_dates_without_a_format_stop_with_count_and_three_examples() -> None:
    column = pd.Series(["01/02/2023", "13/02/2023", "14/02/2023", "15/02/2023", "20/02/2023"])
    with pytest.raises(TableInputError) as caught:
        parse_times(column, "applied_on", None)
    message = str(caught.value)
    assert "4 of 5 values could not be parsed" in message
    assert "'13/02/2023', '14/02/2023', '15/02/2023'" in message and "--time-format" in message


def test_ambiguous_dates_that_all_parse_are_refused_not_guessed() -> None:
    with pytest.raises(TableInputError, match="2 of 2 values have an ambiguous day/month order"):
        parse_times(pd.Series(["03/04/2024", "05/06/2024"]), "t", None)


def test_with_a_format_dates_parse_strictly() -> None:
    times = parse_times(pd.Series(["13/02/2023", None, "01/03/2023"]), "t", "%d/%m/%Y")
    assert times.iloc[0] == pd.Timestamp("2023-02-13", tz="UTC") and pd.isna(times.iloc[1])
    with pytest.raises(TableInputError, match="1 of 2 values do not match --time-format %d/%m/%Y"):
        parse_times(pd.Series(["13/02/2023", "2023-03-01"]), "t", "%d/%m/%Y")


def test_iso_times_need_no_format() -> None:
    times = parse_times(pd.Series(["2023-02-13T10:00:00Z", "2023-03-01"]), "t", None)
    assert times.notna().all()


def test_a_text_label_without_bad_value_lists_the_values_seen() -> None:
    with pytest.raises(TableInputError, match=r"not 0/1 \(values seen: 'no', 'yes'\).*--bad-value"):
        binary_label(pd.Series(["yes", "no", None]), "bad", bad_value=None)


def test_a_numeric_zero_one_label_needs_no_bad_value_and_missing_labels_are_counted() -> None:
    values, classes, excluded = binary_label(pd.Series([0, 1, np.nan, 1]), "bad", bad_value=None)
    assert values.tolist()[:2] == [0.0, 1.0] and np.isnan(values.iloc[2])
    assert classes == {"bad": ["1"], "good": ["0"]}
    assert [(e.reason, e.count) for e in excluded] == [("label missing", 1)]


def test_bad_value_makes_the_other_value_good_case_insensitively() -> None:
    values, classes, excluded = binary_label(
        pd.Series(["Default", "repaid", "Default"]), "o", bad_value="default"
    )
    assert values.tolist() == [1.0, 0.0, 1.0] and classes == {"bad": ["Default"], "good": ["repaid"]}
    assert excluded == []


def test_more_than_two_label_values_need_good_values_then_others_are_counted_out() -> None:
    label = pd.Series(["default", "repaid", "pending", "repaid", "pending"])
    with pytest.raises(TableInputError, match=r"3 distinct values.*--good-value"):
        binary_label(label, "o", bad_value="default")
    values, _, excluded = binary_label(label, "o", bad_value="default", good_values=["repaid"])
    assert values.notna().sum() == 3
    assert [(e.reason, e.count, e.detail) for e in excluded] == [
        ("label value neither --bad-value nor --good-value", 2, "'pending'")
    ]


def test_a_bad_value_that_never_occurs_is_an_error() -> None:
    with pytest.raises(TableInputError, match=r"no value 'yes'.*values seen: 'default', 'repaid'"):
        binary_label(pd.Series(["default", "repaid"]), "o", bad_value="yes")


def test_constant_id_like_and_leaky_columns_are_screened_unless_kept() -> None:
    rng = np.random.default_rng(0)
    label = (rng.random(400) < 0.2).astype(np.int64)
    table = pd.DataFrame(
        {
            "branch": "Linyi",
            "ref": [f"R{i}" for i in range(400)],
            "after_default": label * 5.0 + rng.random(400),
            "income": rng.normal(size=400),
            "crop": rng.choice(["rice", "tea"], 400),
        }
    )
    inputs, excluded = screen_columns(table, label, list(table.columns))
    assert inputs == ["income", "crop"]
    assert {(e.column, e.reason) for e in excluded} == {
        ("branch", "constant"),
        ("ref", "id-like text"),
        ("after_default", "leakage suspect"),
    }
    kept, _ = screen_columns(table, label, list(table.columns), keep=["after_default"])
    assert "after_default" in kept


def test_a_column_whose_gaps_leak_the_label_is_caught() -> None:
    label = np.array([0, 1] * 100, dtype=np.int64)
    stage = pd.Series(np.where(label == 1, 1.0, np.nan))  # filled in only after a default
    varied = pd.Series(np.where(label == 1, np.arange(200.0), np.nan))
    _, excluded = screen_columns(pd.DataFrame({"stage_days": varied, "s": stage}), label, ["stage_days"])
    assert [e.reason for e in excluded] == ["leakage suspect"]


def test_missing_values_are_counted_with_their_share() -> None:
    table = pd.DataFrame({"a": [1.0, None, None, 4.0], "b": ["x", "y", "z", "w"]})
    assert missing_values(table, ["a", "b"]) == {
        "a": {"count": 2, "share": 0.5},
        "b": {"count": 0, "share": 0.0},
    }


def test_the_generated_table_trains_with_every_exclusion_reported(tmp_path: Path) -> None:
    path = write_lender_table(tmp_path / "loans.csv", 800, seed=5)
    ts = table_training_set(
        path,
        label="outcome",
        time="applied_on",
        protected=["gender"],
        time_format="%d/%m/%Y",
        bad_value="default",
        good_values=["repaid"],
    )
    report = ts.inputs
    assert report is not None
    reasons = {e.reason: e.count for e in report.rows_excluded}
    raw = lender_table(800, seed=5)
    assert reasons["label value neither --bad-value nor --good-value"] == int(
        (raw["outcome"] == "pending").sum()
    )
    assert reasons["time missing"] == int((raw["applied_on"].isna() & (raw["outcome"] != "pending")).sum())
    assert report.rows_used == len(ts) == report.rows_read - sum(reasons.values())
    assert {(e.column, e.reason) for e in report.columns_excluded} == {
        ("application_id", "id-like text"),
        ("branch", "constant"),
        ("collections_stage", "leakage suspect"),
    }
    assert set(ts.spec.names) == {"age", "monthly_income", "land_mu", "late_payments", "loan_amount", "crop"}
    assert report.missing["monthly_income"]["count"] == int(ts.features["monthly_income"].isna().sum()) > 0
    totals = report.to_dict()["excluded_totals"]
    assert totals["columns: constant"] == 1 and totals["rows: time missing"] == reasons["time missing"]


def test_a_monotone_column_that_was_excluded_is_an_error(tmp_path: Path) -> None:
    path = write_lender_table(tmp_path / "loans.csv", 300, seed=5)
    with pytest.raises(TableInputError, match="--monotone branch: not a model input"):
        table_training_set(
            path,
            label="outcome",
            time="applied_on",
            monotone={"branch": 1},
            time_format="%d/%m/%Y",
            bad_value="default",
            good_values=["repaid"],
        )


def test_a_numeric_row_id_is_excluded_but_near_unique_amounts_are_kept() -> None:
    rng = np.random.default_rng(8)
    rows = 500
    table = pd.DataFrame(
        {
            "loan_no": np.arange(100_001, 100_001 + rows),  # an application number
            "income": np.round(rng.lognormal(7.5, 0.5, rows)),  # whole yuan, nearly all distinct
            "rate": rng.uniform(0.03, 0.09, rows),  # continuous, all distinct
        }
    )
    label = (rng.random(rows) < 0.2).astype(np.int64)
    inputs, excluded = screen_columns(table, label, list(table.columns))
    assert inputs == ["income", "rate"]
    [row_id] = excluded
    assert (row_id.column, row_id.reason) == ("loan_no", "id-like number")
    assert "500 distinct whole numbers in 500 rows, 100001 to 100500" in row_id.detail
    kept, none = screen_columns(table, label, list(table.columns), keep=["loan_no"])
    assert kept == ["loan_no", "income", "rate"] and not none
