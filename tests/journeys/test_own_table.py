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


def _model_card(root: Path, run_id: str) -> str:
    """The model card the run stored in its MLflow artifacts (what a reviewer opens)."""
    (card,) = [p for p in (root / "mlruns" / "artifacts").rglob("model_card.md") if run_id in str(p)]
    return card.read_text(encoding="utf-8")


def test_protected_attributes_of_my_own_table(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path), tmp_path)
    table = tmp_path / "applications.csv"
    cli.json("simulate-table", "--rows", "1500", "--gender-proxy", "--out", str(table))
    base = ("--table", str(table), "--label", "outcome", "--time", "applied_on", "--time-format", "%d/%m/%Y")
    base += ("--bad-value", "default", "--good-value", "repaid", "--oot-months", "4", "--protected", "gender")

    # A numeric protected column with many values and no bands: one group per value is refused.
    line = _one_line_refusal(cli, *base, "--protected", "monthly_income")
    assert "protected column 'monthly_income' is numeric" in line and "--band monthly_income:" in line
    line = _one_line_refusal(cli, *base, "--band", "land_mu:5,10")
    assert "--band land_mu: not a protected column" in line

    # Age, audit only: default bands, no one-row groups, not an input; the gender proxy is named.
    _, audit_only = cli.json("train", *base, "--protected", "age")
    inputs = audit_only["data"]["inputs"]
    band = inputs["bands"]["age"]
    assert band["labels"] == ["<25", "25-39", "40-59", "60+"] and band["source"] == "default age bands"
    assert min(band["counts"].values()) >= 30 and sum(band["counts"].values()) == inputs["rows_used"]
    assert inputs["protected"] == ["gender", "age"] and inputs["protected_inputs"] == []
    assert audit_only["data"]["features"] == 6  # income, land, late payments, amount, crop, childcare leave
    (warning,) = inputs["proxy_warnings"]
    assert warning["input"] == "childcare_leave_days" and warning["attribute"] == "gender"
    assert warning["strength"] >= 0.8 and warning["describe"].endswith(f"→ gender={warning['group']}")
    card = _model_card(tmp_path, audit_only["run_id"])
    assert "| age | 25-39 |" in card and "| age | 60+ |" in card  # the OOT segments are the bands
    assert "gender, age is protected and not a model input" not in card
    assert "gender, age are protected and not model inputs (audit groups only)" in card
    assert "gender, age and group membership are not inputs" not in card

    # Age as an input too: flagged on the console, in --json, in the model card and in the audit.
    done = cli.run("train", *base, "--protected-input", "age", "--band", "age:30,50")
    assert done.returncode == 0, done.stderr[-2000:]  # other bands, other fingerprint: not exit 11
    console = " ".join(done.stdout.split() + done.stderr.split())
    assert "warning: protected AND model inputs (--protected-input): age" in console
    assert "age banded for audits (--band): <30 " in console and " 30-49 " in console and " 50+ " in console
    assert "warning: input childcare_leave_days alone predicts gender=" in console
    _, with_age = cli.json("train", *base, "--protected-input", "age")
    inputs = with_age["data"]["inputs"]
    assert inputs["protected_inputs"] == ["age"] and inputs["roles"]["protected (model input)"] == ["age"]
    assert with_age["data"]["features"] == 7
    assert with_age["training_key"] != audit_only["training_key"]  # the options are in the fingerprint
    assert with_age["data"]["options"] != audit_only["data"]["options"]
    card = _model_card(tmp_path, with_age["run_id"])
    assert "age is protected and a model input (--protected-input)" in card
    assert "gender is protected and not a model input" in card
    assert "gender, age and group membership are not inputs" not in card

    code, audit = cli.json(
        "audit", "fairness", "--data", "oot", "--model", with_age["version"], "--n-boot", "0", expect=(0, 3)
    )
    assert code == (0 if audit["passed"] else 3) and audit["protected_inputs"] == ["age"]
    assert audit["warnings"][0].startswith("age is a protected attribute AND a model input")
    groups = {g["group"]: g["n"] for g in audit["attributes"]["age"]["groups"]}
    assert set(groups) <= {"<25", "25-39", "40-59", "60+"} and min(groups.values()) > 1  # bands, not ages
    shown = cli.run("audit", "fairness", "--data", "oot", "--model", with_age["version"], "--n-boot", "0")
    assert "warning: age is a protected attribute AND a model input" in " ".join(shown.stdout.split())
