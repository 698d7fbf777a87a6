"""Journey: a lender trains on their own awkward table and nothing is dropped or guessed silently.

The table (from `coopscore simulate-table`) has dd/mm/yyyy dates with blanks, a per-row text id, a
constant column, a text label with a third value, a column written after default, and missing
incomes. Each awkward case stops with exit 2 and one line saying what to change; with the right flags
the model trains and `--json` lists every excluded row and column with its count and reason.
Needs no session world: its own data folder and MLflow store under tmp_path.
"""

from __future__ import annotations

from pathlib import Path

from tests.journeys.conftest import Cli, journey_env


def _one_line_refusal(cli: Cli, *args: str) -> str:
    """Run without --json: exit 2, one line on stderr, no traceback; return that line."""
    done = cli.run("train", *args)
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stderr[-2000:]}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_training_on_an_awkward_table_of_my_own(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path), tmp_path)
    table = tmp_path / "applications.csv"
    _, made = cli.json("simulate-table", "--rows", "1500", "--out", str(table))
    assert made["rows"] == 1500 and table.exists()
    base = ("--table", str(table), "--time", "applied_on", "--protected", "gender")

    line = _one_line_refusal(cli, *base, "--label", "outcom")
    assert "no such column: --label 'outcom' (did you mean 'outcome'" in line

    line = _one_line_refusal(cli, *base, "--label", "outcome")
    assert "is not 0/1 (values seen: 'default', 'pending', 'repaid')" in line and "--bad-value" in line

    line = _one_line_refusal(cli, *base, "--label", "outcome", "--bad-value", "default")
    assert "3 distinct values" in line and "--good-value" in line

    label = ("--label", "outcome", "--bad-value", "default", "--good-value", "repaid")
    line = _one_line_refusal(cli, *base, *label)
    assert "values could not be parsed (e.g. '13/" in line and "--time-format" in line
    _, refused = cli.json("train", *base, *label, expect=2)
    assert refused["status"] == "bad_input" and refused["exit_code"] == 2

    line = _one_line_refusal(cli, *base, *label, "--time-format", "%d/%m/%Y", "--monotone", "late_paymnts=+1")
    assert "--monotone 'late_paymnts' (did you mean 'late_payments'" in line

    _, summary = cli.json(
        "train",
        *base,
        *label,
        "--time-format",
        "%d/%m/%Y",
        "--monotone",
        "late_payments=+1",
        "--oot-months",
        "4",
    )
    assert summary["status"] == "registered"
    inputs = summary["data"]["inputs"]
    rows = {item["reason"]: item["count"] for item in inputs["rows_excluded"]}
    assert rows.keys() == {"label value neither --bad-value nor --good-value", "time missing"}
    assert all(count > 0 for count in rows.values())
    assert inputs["rows_used"] == summary["data"]["rows"] == inputs["rows_read"] - sum(rows.values())
    columns = {item["column"]: item["reason"] for item in inputs["columns_excluded"]}
    assert columns == {
        "application_id": "id-like text",
        "branch": "constant",
        "collections_stage": "leakage suspect",
    }
    assert (
        inputs["missing"]["monthly_income"]["count"] > 0
        and 0 < inputs["missing"]["monthly_income"]["share"] < 0.3
    )
    assert inputs["roles"]["protected (audits only)"] == ["gender"]
    assert summary["data"]["features"] == 6  # age, income, land, late payments, amount, crop


def test_audits_and_gates_of_my_table_model(tmp_path: Path) -> None:
    """The table model is audited on its own stored OOT split with its own protected column, the
    promotion shows the fairness and scorecard gates, and training the same table again registers
    nothing (exit 11). Model names of its own, so nothing else in the store is disturbed."""
    cli = Cli(journey_env(tmp_path), tmp_path)
    table = tmp_path / "applications.csv"
    cli.json("simulate-table", "--rows", "3000", "--out", str(table))
    name = "own-table-audit"
    train_args = (
        "train",
        "--table",
        str(table),
        "--time",
        "applied_on",
        "--time-format",
        "%d/%m/%Y",
        "--label",
        "outcome",
        "--bad-value",
        "default",
        "--good-value",
        "repaid",
        "--oot-months",
        "4",
    )
    _, summary = cli.json(*train_args, "--protected", "gender", "--model-name", name)
    assert summary["status"] == "registered" and summary["version"] == "1"

    code, audit = cli.json(
        "audit",
        "fairness",
        "--data",
        "oot",
        "--model-name",
        name,
        "--model",
        "challenger",
        "--min-group-size",
        "50",
        expect=(0, 3),
    )
    assert code == (0 if audit["passed"] else 3)
    assert audit["source"].startswith(f"oot: stored split of {name} v1, {summary['metrics']['oot_rows']:,} ")
    assert audit["model_name"] == name and audit["model_version"] == "1"
    assert audit["n"] == audit["n_labelled"] == summary["metrics"]["oot_rows"]
    assert list(audit["attributes"]) == ["gender"]
    assert {g["group"] for g in audit["attributes"]["gender"]["groups"]} == {"female", "male"}

    unknown = cli.run("audit", "fairness", "--data", "oot", "--model-name", "own-tabel", "--model", "1")
    lines = [line for line in unknown.stderr.splitlines() if line.strip()]
    assert unknown.returncode == 2 and len(lines) == 1, unknown.stderr
    assert "no registered model named 'own-tabel'" in lines[0] and f"'{name}'" in lines[0]

    code, promoted = cli.json("promote", "--model-name", name, expect=(0, 10))
    gates = {g["gate"]: g for g in promoted["gates"]}
    assert gates.keys() == {"oot_auc", "calibration", "directions", "scorecard", "fairness"}
    fairness = gates["fairness"]
    assert not fairness["skipped"] and fairness["details"]["attributes"] == ["gender"]
    scorecard = gates["scorecard"]
    assert not scorecard["skipped"] and "vs scorecard" in scorecard["reason"]
    numbers = scorecard["details"]
    assert numbers["model_auc"] - numbers["scorecard_auc"] == numbers["difference"]
    assert numbers["ci_low"] <= numbers["difference"] <= numbers["ci_high"]
    assert scorecard["passed"] == (numbers["ci_high"] >= 0)  # fails only when clearly worse

    _, again = cli.json(*train_args, "--protected", "gender", "--model-name", name, expect=11)
    assert again["status"] == "no_new_data" and again["version"] == "1"
    _, listed = cli.json("models", "list", "--model-name", name)
    assert [v["version"] for v in listed["versions"]] == ["1"]

    # Without a protected column the fairness gate is there, and says why it judged nothing.
    other = "own-table-unprotected"
    cli.json(*train_args, "--model-name", other)
    shown = cli.run("promote", "--model-name", other)
    assert shown.returncode in (0, 10), shown.stderr
    assert "skipped" in shown.stderr and "no protected columns" in shown.stderr
    assert "scorecard" in shown.stderr
