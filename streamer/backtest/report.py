"""The backtest's figures as plain-text tables (stdout) and as JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.backtest.analysis import (
    ALERT_HORIZON,
    HORIZONS,
    LEAVING,
    TUNE_HORIZON,
    Backtest,
    Difference,
    Probabilities,
    TuneResult,
)
from streamer.backtest.baseline import BASELINE_DAYS, BASELINE_NAME
from streamer.backtest.choice import MODEL_STANDARD_ERRORS, STANDARD_ERRORS, VOLUME_PREFIX, Choice, Kind
from streamer.backtest.metrics import ALL_RULES, BandRate, RuleStats, band_ratio
from streamer.backtest.sampling import Replay
from streamer.contract.vocabulary import BANDS, Band
from streamer.core.config import COMPONENTS
from streamer.core.score import SIGNAL_COMPONENT

RATIO_TARGET = 3.0


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d")


def _num(value: float | None, places: int = 3) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def auc_text(value: float | None) -> str:
    """An AUC in a plot's title or a written configuration's header: n/a when undefined (no
    churn, or only churn, to rank)."""
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf (no green churn)" if math.isinf(value) else f"{value:.1f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _line_counts(replay: Replay) -> str:
    """Every line counted once, as `streamer offline` counts them."""
    blank = f", {replay.blank:,} blank skipped" if replay.blank else ""
    return (
        f"{replay.accepted:,} accepted, {replay.duplicates:,} duplicates, {replay.rejected:,} rejected{blank}"
    )


def render(result: Backtest, source: str, reused: Path | None = None) -> str:
    """The report; `reused`: the replay cache the replay was read from (made in its seconds)."""
    replay = result.replay
    h30, h60 = result.horizons[30], result.horizons[60]
    replayed = (
        f"read from the replay saved in {reused} (made in {replay.seconds:.1f} s)"
        if reused is not None
        else f"replayed in {replay.seconds:.1f} s"
    )
    parts = [
        f"backtest of {source}: {replay.lines:,} lines ({_line_counts(replay)}) {replayed}",
        f"events {day(replay.data_start)} .. {day(replay.data_end)}, "
        f"activity from {day(replay.activity_start)}; "
        f"{len(replay.month_starts)} month starts sampled ({day(replay.month_starts[0])} .. "
        f"{day(replay.month_starts[-1])}), {len(replay.timelines):,} accounts; "
        "a sample is an account paying at a month start, scored from the events before it",
        "",
        "ROC AUC of the score for churn (MRR reaching 0) within 30 and 60 days of each month start",
    ]
    by_month_60 = {m.at: m for m in h60.months}
    rows = [
        [
            day(m.at),
            f"{m.samples:,}",
            f"{m.churned:,}",
            _num(m.auc),
            f"{by_month_60[m.at].churned:,}" if m.at in by_month_60 else "-",
            _num(by_month_60[m.at].auc) if m.at in by_month_60 else "-",
        ]
        for m in h30.months
    ]
    rows.append(
        [
            "pooled",
            f"{len(h30.labelled.samples):,}",
            f"{int(h30.labelled.churned.sum()):,}",
            _num(h30.pooled_auc),
            f"{int(h60.labelled.churned.sum()):,}",
            _num(h60.pooled_auc),
        ]
    )
    parts.append(table(["month start", "paying", "churn 30d", "AUC 30d", "churn 60d", "AUC 60d"], rows))
    parts.append(render_baseline(result))
    parts += ["", "Each component alone (pooled; over the samples where it has data)"]
    parts.append(
        table(
            ["component", "with data", "AUC 30d", "AUC 60d"],
            [
                [c30.name, _pct(c60.coverage), _num(c30.auc), _num(c60.auc)]
                for c30, c60 in zip(h30.components, h60.components, strict=True)
            ],
        )
    )
    parts += ["", "Churn rate by band (pooled over month starts)"]
    parts.append(
        table(
            ["band", "samples 30d", "churned", "rate", "samples 60d", "churned", "rate"],
            [[band, *_band_cells(h30.bands[band]), *_band_cells(h60.bands[band])] for band in BANDS],
        )
    )
    parts.append(
        f"red/green churn ratio: 30 days {_ratio(h30.red_green)}, 60 days {_ratio(h60.red_green)} "
        f"(red: {h60.bands[Band.red].samples:,} samples at 60 days); yellow/green: 30 days "
        f"{_ratio(band_ratio(h30.bands, Band.yellow))}, 60 days {_ratio(band_ratio(h60.bands, Band.yellow))}"
    )
    start, end = result.alert_window
    base = base_rate(result)
    last_judged = end - ALERT_HORIZON * 86_400_000  # an alert needs the horizon after it in the data
    judged = (
        f"{day(start)} .. {day(last_judged)}"
        if last_judged >= start
        else f"from {day(start)} to {ALERT_HORIZON} days before the data end (none: the data ends {day(end)})"
    )
    parts += [
        "",
        f"Alerts (band_recovered left out): precision = share of alerts raised {judged} "
        f"whose account churned within {ALERT_HORIZON} days after;",
        f"recall = share of the churns {day(start)} .. {day(end)} with such an alert "
        f"in the {ALERT_HORIZON} days before (base rate: {_pct(base)} of paying accounts churn "
        "within 60 days of a month start)",
    ]
    parts.append(
        table(
            ["rule", "alerts", "churned after", "precision", "x base rate", "churns", "caught", "recall"],
            [
                [
                    s.rule,
                    f"{s.alerts:,}",
                    f"{s.true_positives:,}",
                    _pct(s.precision),
                    _ratio(lift(s, base)),
                    f"{s.churns:,}",
                    f"{s.caught:,}",
                    _pct(s.recall),
                ]
                for s in result.alerts
            ],
        )
    )
    weak = no_better_than_base(result.alerts, base)
    if weak:
        parts.append(
            "no better than the base rate on this history: "
            + ", ".join(f"{s.rule} ({_pct(s.precision)} of {s.alerts:,})" for s in weak)
            + "; their alerts churned no more often than any paying account. To switch a rule "
            "off: `[alerts]` NAME = { enabled = false } in the score configuration"
        )
    if result.tuning is not None:
        parts += ["", *render_tuning(result.tuning)]
    parts += ["", targets(result)]
    return "\n".join(parts)


def base_rate(result: Backtest) -> float | None:
    """The share of paying accounts churning within 60 days of a month start (the alerts' yardstick)."""
    labelled = result.horizons[60].labelled
    return float(labelled.churned.mean()) if len(labelled.samples) else None


def lift(stats: RuleStats, base: float | None) -> float | None:
    """A rule's precision as a multiple of the base churn rate (None when either is unknown)."""
    precision = stats.precision
    if precision is None or not base:
        return None
    return precision / base


def no_better_than_base(alerts: Sequence[RuleStats], base: float | None) -> list[RuleStats]:
    """The rules (not the all-at-risk line) whose alerts churned no more often than the base rate."""
    return [
        s for s in alerts if s.rule != ALL_RULES and (found := lift(s, base)) is not None and found <= 1.0
    ]


def render_baseline(result: Backtest) -> str:
    """The score's pooled AUC beside the one-line usage baseline's, on the same samples, and at 60
    days how far it is from a coin flip and from the baseline, with the noise of each."""
    h30, h60 = result.horizons[30], result.horizons[60]
    base = result.baseline
    lines = [
        f"baseline, {BASELINE_NAME}: AUC 30d {_num(base.get(30))}, AUC 60d {_num(base.get(60))} "
        f"(the score: {_num(h30.pooled_auc)}, {_num(h60.pooled_auc)})"
    ]
    minus = result.minus.get(60, {})
    chance, baseline = minus.get("chance"), minus.get("baseline")
    if chance is not None:
        lines.append(
            f"the score's AUC 60d {_num(h60.pooled_auc)} (SE {_se(chance)}): {_against_chance(chance)}"
        )
    if baseline is not None:
        verdict = "within two standard errors: noise"
        if baseline.clear:
            verdict = f"{'above' if baseline.auc > 0 else 'below'} it by more than two standard errors"
        lines.append(
            f"the score minus the baseline, AUC 60d: {baseline.auc:+.3f} (SE {_se(baseline)}, {verdict})"
        )
    lines.append("(standard errors: a bootstrap over accounts, paired for the difference)")
    return "\n".join(lines)


def _against_chance(chance: Difference) -> str:
    """What the score's AUC minus a coin flip's says of this history."""
    if not chance.clear:
        return (
            "within two standard errors of a coin flip (0.5): on this history the score does not rank "
            "churn, whatever its bands say"
        )
    return (
        "better than a coin flip"
        if chance.auc > 0
        else "worse than a coin flip: it ranks churn the wrong way"
    )


def accounts(count: int) -> str:
    """'1 account', '12 accounts'."""
    return f"{count:,} account" + ("" if count == 1 else "s")


def _se(found: Difference) -> str:
    return "n/a" if found.standard_error is None else f"{found.standard_error:.3f}"


def _band_cells(rate: BandRate) -> list[str]:
    return [f"{rate.samples:,}", f"{rate.churned:,}", _pct(rate.rate)]


def targets(result: Backtest) -> str:
    """The score's targets at 60 days: rank churn at least as well as the activity count on the
    same samples, and red churning at least `RATIO_TARGET` times as often as green."""
    h60 = result.horizons[60]
    baseline = result.baseline.get(60)
    no_churn = not h60.labelled.churned.any()
    if h60.pooled_auc is None or baseline is None:
        auc_verdict = _cannot_judge(no_churn, "every sample churned")
    else:
        auc_verdict = "met" if h60.pooled_auc >= baseline else "NOT MET"
    if h60.red_green is None:
        red, green = h60.bands[Band.red], h60.bands[Band.green]
        ratio_verdict = _cannot_judge(
            no_churn,
            "no red sample"
            if not red.samples
            else "no green sample"
            if not green.samples
            else "no churn in red or green",
        )
    else:
        ratio_verdict = "met" if h60.red_green >= RATIO_TARGET else "NOT MET"
    return (
        f"targets of the score tested: AUC 60d {_num(h60.pooled_auc)} >= the baseline's {_num(baseline)} "
        f"{auc_verdict}; red/green churn 60d {_ratio(h60.red_green)} >= {RATIO_TARGET:g}x {ratio_verdict}"
    )


def _cannot_judge(no_churn: bool, otherwise: str) -> str:
    """A target's verdict when its figure is undefined: neither met nor missed."""
    return f"cannot be judged ({'no churn within 60 days' if no_churn else otherwise})"


def render_choice(choice: Choice) -> list[str]:
    """What was written and why, out of fold: the [model] (the score calibrated, the mix or the plain
    fit) and the score's weights."""

    def best(kind: Kind) -> str:
        found = choice.best(kind)
        return f"{found.label} {_num(found.auc)}" if found is not None else "n/a"

    folds = f"{len(choice.folds)} folds on {choice.horizon_days}-day churn"
    candidates = (
        f"{best(Kind.default)}, best {best(Kind.health)} (shrunk towards the default), "
        f"best {best(Kind.plain)} (with feature volumes), {best(Kind.mix)} (default and plain fits averaged)"
    )
    if choice.too_few_churned:
        return [
            f"{accounts(choice.churned_accounts)} churned in the training samples, fewer than "
            f"{choice.min_churned_accounts} (--min-churned-accounts): too few to learn from, so nothing "
            "fitted is written: the default weights, and the score calibrated as the [model] behind "
            "churn_risk_60d (it ranks as the score does, but for a scheduled cancellation: see below)",
            f"for comparison only, out of fold ({folds}): {candidates}",
        ]
    bar = "n/a" if choice.bar is None else f"{choice.bar:.3f}"
    lines = [
        f"model choice by out-of-fold AUC ({folds}; "
        f"standard-error rules: churn_risk_60d is the mix unless the plain fit ranks better by more "
        f"than {MODEL_STANDARD_ERRORS:g} SE of their difference; the weights are the default unless a "
        f"health fit ranks better by more than {STANDARD_ERRORS:g} SE, against "
        f"the best of them: SE of best - default {_num(choice.standard_error)}, default bar {bar}): "
        f"{candidates} -> {choice.winner.label} as the [model], {choice.weighting.label} weights"
    ]
    if choice.winner.kind is Kind.mix:
        lines.append(
            "the mix of the default (calibrated) and the plain regressions is the [model] behind "
            "churn_risk_60d (rank accounts by it): the plain fit did not rank better out of fold by more "
            f"than {MODEL_STANDARD_ERRORS:g} standard errors of their difference"
        )
    elif choice.winner.kind is Kind.plain:
        lines.append(
            "the plain regression ranked clearly better than the mix out of fold (by more than "
            f"{MODEL_STANDARD_ERRORS:g} standard errors): it is the [model] behind churn_risk_60d (rank "
            "accounts by it)"
        )
    default = choice.best(Kind.default)
    winner_auc, default_auc = choice.winner.auc, default.auc if default is not None else None
    if winner_auc is not None and default_auc is not None and winner_auc < default_auc:
        lines.append(
            f"note: out of fold the default score ranked better than the [model] written ({default_auc:.3f} "
            f"against {winner_auc:.3f}): the [model] is chosen among the fits only (docs/backtest.md), and "
            "folds have misjudged both ways; compare the held-out rows below before adopting it"
        )
    if choice.keeps_default:
        lines.append(
            "--tune keeps the default weights: no fit ranked churners better out of fold by more than "
            "the folds' noise"
        )
    else:
        lines.append(
            f"the health fit {choice.weighting.label} ranked clearly better: its weights are written"
        )
    return lines


def _leaving_term(tuning: TuneResult) -> list[str]:
    """What the score calibrated reads besides the score: a scheduled cancellation, where the
    training samples held some (`streamer.backtest.analysis.calibrated_table`)."""
    model = tuning.fitted.model
    if not tuning.choice.too_few_churned:
        return []
    term = model.get("coefficients", {}).get(LEAVING)
    if term is None:
        return ["no training sample had a scheduled cancellation: churn_risk_60d reads the score alone"]
    return [
        f"the calibration also reads a scheduled cancellation (log-odds {-term:+.2f} while one is "
        "scheduled): an account that has said it is leaving ranks above its score"
    ]


def _flat_calibration(tuning: TuneResult) -> list[str]:
    """A note when the score calibrated was written flat: the training scores did not rank churn."""
    model = tuning.fitted.model
    if not tuning.choice.too_few_churned or model.get("score"):
        return []
    return [
        "note: the score did not rank churn in the training samples (its calibrated coefficient is 0), "
        "so churn_risk_60d is the training base rate for every account"
        + (" that has not scheduled its cancellation" if LEAVING in model.get("coefficients", {}) else "")
        + "; rank by the score, or tune again with more history"
    ]


def render_tuning(tuning: TuneResult) -> list[str]:
    months = tuning.train_months
    health, plain = tuning.health, tuning.plain
    lines = [
        f"Tuning: logistic regression of {TUNE_HORIZON}-day churn on the signal sub-scores "
        "(a missing one takes its training mean, plus a missing-data column where it is sometimes missing)",
        f"trained on {len(months)} month starts {day(months[0])} .. {day(months[-1])} "
        f"and the weekly grid between them ({tuning.train_samples:,} samples, "
        f"{tuning.train_churned:,} churned); held out "
        f"{day(tuning.test_months[0])} .. {day(tuning.test_months[-1])} "
        f"(a training instant t is used only if t + {TUNE_HORIZON} days <= the first held-out one); "
        "default = the configuration tested (--config, else the built-in defaults)",
        f"L2 penalty by rolling-origin cross-validation inside the training period "
        f"({len(tuning.choice.folds)} folds, standardised columns): health fit "
        f"{health.l2:g} (towards the default's weights; inf = the default), plain fit {plain.l2:g} "
        "(towards 0; pooled validation AUC, then log-loss)",
        *render_choice(tuning.choice),
        *_flat_calibration(tuning),
        *_leaving_term(tuning),
        "",
    ]
    rows = []
    for name in health.space.signals:
        coefficient = health.coefficients[name]
        rows.append(
            [
                name,
                SIGNAL_COMPONENT.get(name, "?"),
                f"{tuning.default_signal_weights.get(name, 0.0):g}",
                f"{tuning.fitted.signal_weights.get(name, 0.0):.3f}",
                f"{math.exp(-0.1 * coefficient):.2f}",
                f"{health.space.means[name]:.1f}" + (" (constant)" if name in health.space.constant else ""),
                _num(health.missing.get(name)),
                f"{plain.coefficients[name]:+.3f}",
            ]
        )
    lines.append(
        table(
            ["signal", "component", "default w", "tuned w", "churn odds x per -10 pts", "mean",
             "missing", "plain coef"],
            rows,
        )
    )  # fmt: skip
    lines.append(
        "churn odds x per -10 pts: of the health fit (the tuned weights), for 10 sub-score points "
        "less; plain coef: the plain fit's log-odds per sub-score / 100, unconstrained (signals "
        "that move together can take large coefficients of opposite signs)"
    )
    if health.space.constant & set(health.space.signals):
        lines.append(
            "(constant): one value over every training sample, so nothing to learn from: its "
            "health coefficient is the default's weight and its plain coefficient 0"
        )
    volumes = [
        f"{name.removeprefix(VOLUME_PREFIX)} {value:+.3f}"
        for name, value in plain.coefficients.items()
        if name.startswith(VOLUME_PREFIX)
    ]
    if volumes:
        lines.append(f"plain coef per ln(1 + events over 28 days) of each feature: {', '.join(volumes)}")
    comp_rows = [
        [name, f"{tuning.default_weights[name]:.3f}", f"{tuning.tuned_weights[name]:.3f}"]
        for name in COMPONENTS
    ]
    lines += ["", table(["component", "default", "tuned"], comp_rows)]
    held = [
        [f"AUC {d}d", _num(tuning.default.auc.get(d)), _num(tuning.tuned.auc.get(d)),
         _num(tuning.risk.auc.get(d)), _num(tuning.plain_risk.auc.get(d))]
        for d in HORIZONS
    ]  # fmt: skip
    held.append(
        [
            f"red/green {TUNE_HORIZON}d",
            _ratio(tuning.default.red_green),
            _ratio(tuning.tuned.red_green),
            "",
            "",
        ]
    )
    held.append(["Brier 60d", "", "", f"{tuning.risk.brier:.4f}", f"{tuning.plain_risk.brier:.4f}"])
    held.append(["log-loss 60d", "", "", f"{tuning.risk.log_loss:.4f}", f"{tuning.plain_risk.log_loss:.4f}"])
    lines += [
        "",
        table(["held out", "default score", "tuned score", "churn_risk_60d", "plain LR"], held),
        f"what --tune chose ranks by churn_risk_60d: held-out AUC {TUNE_HORIZON}d "
        f"{_num(tuning.chosen.get(TUNE_HORIZON))}; the mix of the default and the plain LR "
        f"{_num(tuning.mix_risk.auc.get(TUNE_HORIZON))}",
        *_versus_lines(tuning),
        "",
        f"Calibration of churn_risk_60d on the held-out month starts ({TUNE_HORIZON}-day churn, "
        "deciles of predicted risk)",
        table(
            ["decile", "samples", "predicted", "observed"],
            [
                [str(i + 1), f"{b.samples:,}", _pct(b.predicted), _pct(b.observed)]
                for i, b in enumerate(tuning.risk.calibration)
            ],
        ),
    ]
    return lines


def to_json(result: Backtest) -> dict[str, Any]:
    """All the figures, for machines (`--json`)."""
    replay = result.replay
    alert_base = base_rate(result)
    data: dict[str, Any] = {
        "lines": replay.lines,
        "accepted": replay.accepted,
        "duplicates": replay.duplicates,
        "rejected": replay.rejected,
        "blank": replay.blank,
        "accounts": len(replay.timelines),
        "month_starts": [day(at) for at in replay.month_starts],
        "horizons": {
            str(days): {
                "samples": len(h.labelled.samples),
                "churned": int(h.labelled.churned.sum()),
                "auc": h.pooled_auc,
                "by_month": [
                    {"month_start": day(m.at), "samples": m.samples, "churned": m.churned, "auc": m.auc}
                    for m in h.months
                ],
                "bands": {
                    b: {"samples": r.samples, "churned": r.churned, "rate": r.rate}
                    for b, r in h.bands.items()
                },
                "red_green_ratio": _finite(h.red_green),
                "components": {c.name: {"coverage": c.coverage, "auc": c.auc} for c in h.components},
                # the pooled AUC minus a coin flip's (0.5) and minus the baseline's, each with the
                # standard error of a bootstrap over accounts (paired for the baseline)
                "minus": {
                    name: _difference_json(found) for name, found in result.minus.get(days, {}).items()
                },
            }
            for days, h in result.horizons.items()
        },
        "alerts": [
            {
                "rule": s.rule,
                "alerts": s.alerts,
                "true_positives": s.true_positives,
                "precision": s.precision,
                "lift": lift(s, alert_base),
                "churns": s.churns,
                "caught": s.caught,
                "recall": s.recall,
            }
            for s in result.alerts
        ],
        "tuning": None,
        "baseline": {
            "name": f"usage_{BASELINE_DAYS}d",
            "auc": {str(days): auc for days, auc in result.baseline.items()},
        },
    }
    tuning = result.tuning
    if tuning is not None:
        data["tuning"] = {
            "train_month_starts": [day(at) for at in tuning.train_months],
            "held_out_month_starts": [day(at) for at in tuning.test_months],
            "default_weights": tuning.default_weights,
            "tuned_weights": tuning.tuned_weights,
            "signal_weights": tuning.fitted.signal_weights,
            "model": tuning.fitted.model,
            "l2": {"health": _finite(tuning.health.l2), "plain": tuning.plain.l2},
            "cv_log_loss": {
                "plain": {str(k): v for k, v in tuning.plain_selection.losses.items()},
            },
            "choice": {
                "winner": tuning.choice.winner.label,
                "weights": tuning.choice.weighting.label,
                "keeps_default": tuning.choice.keeps_default,
                "folds": len(tuning.choice.folds),
                "cv_auc": {c.label: c.auc for c in tuning.choice.candidates},
                "best": None if tuning.choice.best_writable is None else tuning.choice.best_writable.label,
                "standard_error": tuning.choice.standard_error,
                "bar": tuning.choice.bar,
                "horizon_days": tuning.choice.horizon_days,
                "churned_accounts": tuning.choice.churned_accounts,
                "min_churned_accounts": tuning.choice.min_churned_accounts,
            },
            "cv_auc": {
                "plain": {str(k): v for k, v in tuning.plain_selection.aucs.items()},
            },
            "plain_coefficients": {
                "intercept": tuning.plain.intercept,
                **tuning.plain.coefficients,
                **{f"{k} missing": v for k, v in tuning.plain.missing.items()},
            },
            "risk": _probabilities_json(tuning.risk),
            "plain_risk": _probabilities_json(tuning.plain_risk),
            "mix_risk": _probabilities_json(tuning.mix_risk),
            "held_out": {
                name: {
                    "auc": {str(d): a for d, a in held.auc.items()},
                    "red_green_ratio": _finite(held.red_green),
                }
                for name, held in (("default", tuning.default), ("tuned", tuning.tuned))
            }
            | {
                # what --tune chose, through what it publishes: churn_risk_60d (the score calibrated,
                # the mix or the plain fit)
                "chosen": {
                    "auc": {str(d): a for d, a in tuning.chosen.items()},
                    "winner": tuning.choice.winner.kind.value,
                    # its AUC at TUNE_HORIZON minus the default score's / the plain LR's, with the
                    # standard error of the difference (paired bootstrap over accounts)
                    "minus": {name: _difference_json(found) for name, found in tuning.versus.items()},
                }
            }
            | {
                # the models' probabilities on the same held-out samples (no bands)
                name: {"auc": {str(d): a for d, a in found.auc.items()}, "brier": found.brier}
                for name, found in (("churn_risk", tuning.risk), ("logistic", tuning.plain_risk))
            },
        }
    return data


def _versus_lines(tuning: TuneResult) -> list[str]:
    """churn_risk_60d against the default score and the plain LR on the held-out month starts, each
    difference with its standard error, and whether the held-out months tell it from noise."""
    parts = []
    for name, label in (("default", "the default score"), ("plain", "the plain LR")):
        found = tuning.versus.get(name)
        if found is None:
            continue
        if found.auc == 0 and found.standard_error == 0:  # the same ranking (the score calibrated)
            parts.append(f"0 against {label} (the same ranking)")
            continue
        verdict = "more than two standard errors" if found.clear else "within two standard errors: noise"
        parts.append(f"{found.auc:+.3f} against {label} (SE {_se(found)}, {verdict})")
    if not parts:
        return []
    return [
        f"held out, churn_risk_60d's AUC {TUNE_HORIZON}d minus: "
        + "; ".join(parts)
        + " (paired bootstrap over accounts; a difference within the noise is one these month starts "
        "cannot tell apart)"
    ]


def _difference_json(found: Difference) -> dict[str, Any]:
    return {"auc": found.auc, "standard_error": found.standard_error, "clear": found.clear}


def _probabilities_json(found: Probabilities) -> dict[str, Any]:
    return {
        "auc": {str(d): a for d, a in found.auc.items()},
        "brier": found.brier,
        "log_loss": found.log_loss,
        "calibration": [
            {"samples": b.samples, "predicted": b.predicted, "observed": b.observed}
            for b in found.calibration
        ],
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value
