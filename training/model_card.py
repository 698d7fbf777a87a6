"""The model card: what the model is for, what it was trained on, how it compares, where it fails."""

from __future__ import annotations

import math
from typing import Any

from training.datasets import describe
from training.evaluation import CONTENDERS
from training.pipeline import TrainingResult
from training.protected import PROXY_WARNING_STRENGTH
from training.table_inputs import InputReport


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def protected_sentence(inputs: InputReport | None) -> str:
    """The limitation on protected attributes, true to the run: the event log's model never reads
    them; a table's says which were audit only, which were inputs, and which inputs proxy them."""
    if inputs is None:
        return (
            "- Counties, gender, age and group membership are not inputs, but recorded activity can "
            "proxy for them (e.g. deliveries recorded under a husband's name): see the fairness audit."
        )
    audit_only = [c for c in inputs.protected if c not in inputs.protected_inputs]
    parts = []
    if inputs.protected_inputs:
        parts.append(
            f"{', '.join(inputs.protected_inputs)} {'is' if len(inputs.protected_inputs) == 1 else 'are'} "
            "protected and a model input (--protected-input): the score depends on "
            f"{'it' if len(inputs.protected_inputs) == 1 else 'them'} directly, and every fairness audit "
            "flags it"
        )
    if audit_only:
        parts.append(
            f"{', '.join(audit_only)} "
            + (
                "is protected and not a model input"
                if len(audit_only) == 1
                else "are protected and not model inputs"
            )
            + " (audit groups only)"
        )
    if not inputs.protected:
        parts.append(
            "no protected column was named (--protected), so nothing here says which inputs may stand "
            "in for gender, age or other protected attributes"
        )
    if inputs.proxy_warnings:
        named = ", ".join(
            f"{w.input} (→ {w.attribute}={w.group}, strength {w.strength:.2f})" for w in inputs.proxy_warnings
        )
        parts.append(f"inputs that alone predict a protected group: {named}")
    elif inputs.protected:
        parts.append(
            f"no input alone predicts a protected group (strength < {PROXY_WARNING_STRENGTH:.2f}), "
            "though combinations may"
        )
    return "- Protected attributes: " + "; ".join(parts) + ". See the fairness audit."


def _policy_calibration_section(result: TrainingResult) -> list[str]:
    """How the cutoffs and the calibration were chosen, and what the cutoffs achieve."""
    from models.cutoffs import describe_selection

    model = result.model
    selection = dict(model.policy.selection)
    fitted = dict(model.calibration.fitted_on)
    lines = ["### Decision cutoffs and calibration", ""]
    if selection:
        lines.append(f"- cutoffs ({selection.get('why', '')}): {describe_selection(selection)}.")
        if selection.get("warning"):
            lines.append(f"- **warning**: {selection['warning']}.")
        if selection.get("slice_reason"):
            lines.append(f"- chosen on: {selection['slice_reason']}.")
    lines.append(
        f"- calibration: `{model.calibration.method}` (affine in the margin, so score points add up "
        f"exactly) on {fitted.get('rows', '?')} rows, {fitted.get('defaults', '?')} defaults; "
        f"{fitted.get('why', '')}."
    )
    return [*lines, ""]


def _label_text(inputs: InputReport) -> str:
    """The label as the lender defined it: their words (--label-desc), else the column and values."""
    label = inputs.roles.get("label", ["label"])[0]
    bad = ", ".join(repr(v) for v in inputs.label_values.get("bad", []))
    good = ", ".join(repr(v) for v in inputs.label_values.get("good", []))
    coded = f"`{label}` = {bad or '1'} (bad) vs {good or 'anything else'} (good)"
    if inputs.label_description:
        return f"{inputs.label_description} ({coded})"
    return f"{coded}; no definition was given (--label-desc), so what counts as bad is the table's"


def _intended_use(result: TrainingResult) -> list[str]:
    """What the model is for: the demo programme's loans, or the lender's table it was trained on."""
    inputs = result.training_set.inputs
    if inputs is None:
        return [
            "Probability of default (90+ days past due within 12 months) for small low- or "
            "zero-interest loans to members of rural cooperatives, most of whom have no bank or bureau "
            "history. The score supports a loan officer: files too thin to judge are routed to review, "
            "never declined automatically, and every score comes with reason codes in Chinese and "
            "English.",
            "",
            "Not for: pricing, collections, employment or any decision about people who are not loan "
            "applicants; members outside the cooperatives and product types it was trained on.",
        ]
    data = describe(result.training_set)
    return [
        f"Probability of the bad outcome {_label_text(inputs)} for applications like the "
        f"{data['rows']:,} in the lender's table `{inputs.table_file}` (applied "
        f"{str(data['first_application'])[:10]} to {str(data['last_application'])[:10]}). The score "
        "supports a loan officer: every score comes with reason codes named by the table's columns, "
        "and applicants' values outside what training saw are refused or sent to review.",
        "",
        "Not for: applicants, products or periods unlike those in the table; pricing, collections, "
        "employment or any decision about people who are not loan applicants.",
    ]


def _monotone_text(result: TrainingResult) -> str:
    constrained = result.model.spec.constrained
    if result.training_set.inputs is None:
        return "monotone constraints from the feature views"
    if not constrained:
        return "no monotone constraints (none declared with --monotone)"
    named = ", ".join(
        f"{f.name} {'+' if f.direction > 0 else '-'}" for f in result.model.spec.features if f.direction
    )
    return f"monotone constraints declared with --monotone ({named})"


def _bracket(interval: list[float] | None) -> str:
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def _refit_text(result: TrainingResult) -> str:
    slices = ["train"]
    slices += ["validation"] if result.fit.refit_on_validation else []
    slices += ["calibration"] if result.fit.refit_on_calibration else []
    return f", then refit on {' + '.join(slices)}" if len(slices) > 1 else ""


def _additive_text(result: TrainingResult) -> str:
    if not result.fit.additive:
        return ""
    return "one input per tree (an additive model: a feature's points depend on its own value only), "


def _calibration_text(result: TrainingResult) -> str:
    method = result.model.calibration.method
    if method == "cross_fitted_platt":
        return "Platt calibration on out-of-fold margins of the pre-OOT rows (cross-fitted)"
    return "Platt calibration on the calibration slice"


def _data_limitations(result: TrainingResult) -> list[str]:
    """Limits of the data the model learned from."""
    if result.training_set.inputs is None:
        return [
            "- Labels exist only for applications whose 12-month window has closed: the model has not "
            "seen the most recent year of applicants' outcomes, and the OOT window is short.",
            "- Most applicants are thin files; segment AUCs on a few dozen defaults are noisy.",
            "- Shocks that are not yet visible in the records at application time (weather, illness) "
            "are not captured; the model under-ranks applicants hit by a recent shock.",
        ]
    oot = result.evaluation.overall["model"]
    return [
        "- The labels are the table's own: loans whose outcome was not yet known when it was exported "
        "are either missing or recorded as good, and the model cannot tell which.",
        f"- The out-of-time check rests on {oot.n:,} applications and {oot.defaults:,} defaults: its "
        "figures (and every group's) carry the intervals shown in the model report.",
        "- Only the table's columns are seen: anything that changed an applicant's risk but is not "
        "in the table is not captured.",
    ]


def render_model_card(result: TrainingResult, *, model_name: str, version: str, run_id: str) -> str:
    """Markdown model card of a training run."""
    ts = result.training_set
    data = describe(ts)
    fingerprint = ts.fingerprint
    model = result.model
    evaluation = result.evaluation
    lines = [
        f"# Model card: {model_name} v{version}",
        "",
        "## Intended use",
        "",
        *_intended_use(result),
        "",
        "## Data",
        "",
        f"- source: `{fingerprint.source}`, checksum `{fingerprint.checksum[:16]}…`, as of "
        f"`{fingerprint.as_of}`",
        f"- feature set `{fingerprint.feature_set_version}`: {len(model.spec.features)} inputs, "
        f"{len(model.spec.constrained)} with a declared (monotone) direction",
        f"- labelled applications: {data['rows']:,} ({data['defaults']:,} defaults, "
        f"{_number(data['default_rate'])} rate), applied {data['first_application']} to "
        f"{data['last_application']}",
    ]
    if ts.labels is not None:
        lines.append(
            f"- not yet labelled: {ts.labels.window_open:,} applications whose 12-month window is open, "
            f"{ts.labels.closed_without_outcome:,} closed without a recorded outcome"
        )
    if ts.inputs is not None:
        lines += ["", "What the table lost before training (nothing is dropped silently):", ""]
        lines += [f"- {line}" for line in ts.inputs.lines()]
        lines += ["", "Protected attributes in this run:", ""]
        lines += [f"- {line}" for line in ts.inputs.protected_lines()]
    lines += ["", "Out-of-time splits (by application time, never at random):", ""]
    lines += ["| slice | from | to | applications |", "|---|---|---|---|"]
    for name, window in result.split.describe().items():
        lines.append(f"| {name} | {window['start'] or 'start'} | {window['end']} | {window['rows']:,} |")
    lines += [
        "",
        "## Model",
        "",
        f"LightGBM binary classifier, {result.fit.best_iteration} trees (early-stopped on the "
        f"validation slice{_refit_text(result)}), {_additive_text(result)}"
        f"{_monotone_text(result)}, native missing values. {_calibration_text(result)}: log-odds = "
        f"{model.calibration.slope:.4f} × margin {model.calibration.intercept:+.4f}. "
        f"Score: {model.scale.base_score:g} points at "
        f"{model.scale.base_odds:g}:1 good:bad odds, {model.scale.pdo:g} points to double the odds; "
        "grades " + ", ".join(f"{g} ≥ {c:g}" for g, c in model.scale.grades[:-1]) + f", else "
        f"{model.scale.grades[-1][0]}. Decision: approve at PD ≤ {model.policy.approve_max_pd:.1%}, "
        f"decline at PD ≥ {model.policy.decline_min_pd:.1%}, otherwise review"
        + ("; thin files go to review." if ts.inputs is None else "."),
        "",
        *_policy_calibration_section(result),
        "## Out-of-time results",
        "",
        "Approval rate = share approvable (lowest PD first) at a bad rate ≤ "
        f"{evaluation.target_bad_rate:.0%}.",
        "",
        "| contender | AUC [95%] | thin-file AUC | thick-file AUC | Gini | KS | Brier | ECE | "
        "approval rate [95%] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in evaluation.headline():
        lines.append(
            f"| {CONTENDERS.get(row['contender'], row['contender'])} | "
            f"{_number(row['auc'])}{_bracket(row['auc_95'])} | "
            f"{_number(row['thin_auc'])} | {_number(row['thick_auc'])} | {_number(row['gini'])} | "
            f"{_number(row['ks'])} | {_number(row['brier'], 4)} | {_number(row['ece'], 4)} | "
            f"{_number(row['approval_rate'])}{_bracket(row['approval_rate_95'])} |"
        )
    if evaluation.resamples:
        lines += [
            "",
            f"[95%]: percentile bootstrap over {evaluation.resamples} resamples of the OOT "
            "applications, the same resamples for every contender.",
        ]
    lines += [
        "",
        "### Segments (model)",
        "",
        "| segment | value | n | defaults | AUC | mean PD | default rate |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for segment in evaluation.segments:
        m = segment.metrics["model"]
        lines.append(
            f"| {segment.segment} | {segment.value} | {m.n:,} | {m.defaults:,} | {_number(m.auc)} | "
            f"{_number(m.mean_pd, 4)} | {_number(m.default_rate, 4)} |"
        )
    lines += [
        "",
        "## Limitations",
        "",
        *_data_limitations(result),
        protected_sentence(ts.inputs),
        "- Reason codes explain this model's score, not the cause of a default.",
        "",
        f"MLflow run `{run_id}`.",
    ]
    return "\n".join(lines) + "\n"
