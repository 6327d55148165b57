"""PNG plots of a backtest: ROC curves, AUC by month, churn by band, score distributions, alerts, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # used without pyplot: no display, no global state

from streamer.backtest.analysis import HORIZONS, TUNE_HORIZON, Backtest, TuneResult
from streamer.backtest.metrics import roc_curve
from streamer.backtest.report import auc_text, day
from streamer.contract.vocabulary import BANDS, Band
from streamer.core.config import COMPONENTS

PLOT_FILES = {
    name: f"{name}.png"
    for name in ("roc", "auc_by_month", "bands", "scores", "alerts", "weights", "calibration")
}  # in `out`

BAND_COLOURS = {Band.green: "#2e9e44", Band.yellow: "#e0b000", Band.red: "#d03030"}


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def roc(result: Backtest, out: Path) -> Path:
    """ROC curves of the score for 30- and 60-day churn (and default vs tuned on the held-out range)."""
    tuning = result.tuning
    panels = 2 if tuning is not None else 1
    figure = Figure(figsize=(5.2 * panels, 4.8))
    axes = figure.subplots(1, panels, squeeze=False)
    ax = axes[0][0]
    for days in HORIZONS:
        h = result.horizons[days]
        if h.pooled_auc is None:
            continue
        fpr, tpr = roc_curve(-h.labelled.scores, h.labelled.churned)
        ax.plot(fpr, tpr, label=f"churn within {days} days (AUC {h.pooled_auc:.3f})")
    _roc_axes(ax, "Health score as a churn predictor (all month starts)")
    if tuning is not None:
        _held_out_roc(axes[0][1], tuning)
    return _save(figure, out / PLOT_FILES["roc"])


def _held_out_roc(ax: Axes, tuning: TuneResult) -> None:
    labelled = tuning.test_labelled[TUNE_HORIZON]
    for name, held in (("default", tuning.default), ("tuned", tuning.tuned)):
        auc = held.auc.get(TUNE_HORIZON)
        if auc is None:
            continue
        fpr, tpr = roc_curve(-tuning.test_scores[name][TUNE_HORIZON], labelled.churned)
        ax.plot(fpr, tpr, label=f"{name} weights (AUC {auc:.3f})")
    _roc_axes(ax, f"Held out ({day(tuning.test_months[0])} on), {TUNE_HORIZON}-day churn")


def _roc_axes(ax: Axes, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance (AUC 0.5)")
    ax.set_xlabel("false positive rate (healthy accounts flagged)")
    ax.set_ylabel("true positive rate (churners flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def auc_by_month(result: Backtest, out: Path) -> Path:
    starts = result.replay.month_starts
    figure = Figure(figsize=(7.5, 4))
    ax = figure.subplots()
    for days in HORIZONS:
        by_start = {m.at: m.auc for m in result.horizons[days].months if m.auc is not None}
        values = [by_start.get(at, np.nan) for at in starts]
        ax.plot(range(len(starts)), values, marker="o", label=f"{days}-day churn")
    baseline = result.baseline.get(60)
    if baseline is not None:  # the target: rank 60-day churn at least as well as the count
        ax.axhline(
            baseline, color="grey", linestyle="--", linewidth=1, label=f"baseline, 60 days: {baseline:.3f}"
        )
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("ROC AUC")
    ax.set_title("ROC AUC of the score at each month start", fontsize=10)
    ax.set_xticks(range(len(starts)), [day(at) for at in starts], rotation=45, fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(figure, out / PLOT_FILES["auc_by_month"])


def bands(result: Backtest, out: Path) -> Path:
    """Churn rate of each band, 30 and 60 days, with the sample counts on the bars."""
    figure = Figure(figsize=(6.5, 4.2))
    ax = figure.subplots()
    width = 0.38
    positions = np.arange(len(BANDS))
    for offset, days in zip((-width / 2, width / 2), HORIZONS, strict=True):
        rates = result.horizons[days].bands
        values = [100 * (rates[b].rate or 0.0) for b in BANDS]
        bars = ax.bar(
            positions + offset,
            values,
            width,
            color=[BAND_COLOURS[b] for b in BANDS],
            alpha=0.55 if days == HORIZONS[0] else 1.0,
            edgecolor="black",
            linewidth=0.5,
        )
        for bar, band in zip(bars, BANDS, strict=True):
            rate = rates[band]
            ax.annotate(
                f"{days}d: {rate.churned}/{rate.samples}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(positions, [b for b in BANDS])
    ax.set_ylabel("% of paying accounts churning")
    ratio = result.horizons[TUNE_HORIZON].red_green
    label = "-" if ratio is None else ("inf" if np.isinf(ratio) else f"{ratio:.1f}x")
    ax.set_title(
        f"Churn within 30 (light) and 60 days (solid) by band at the month start; red/green 60d: {label}",
        fontsize=9,
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, out / PLOT_FILES["bands"])


def scores(result: Backtest, out: Path, thresholds: tuple[float, float] = (40, 70)) -> Path:
    """Score distribution of accounts that churned within 60 days vs those that did not."""
    labelled = result.horizons[TUNE_HORIZON].labelled
    values = labelled.scores
    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    edges = [2.5 * step for step in range(41)]
    sides = (
        (~labelled.churned, "#4a7bd0", "stayed"),
        (labelled.churned, "#d03030", "churned within 60 days"),
    )
    for side, colour, name in sides:
        count = int(side.sum())
        if count:  # a density of no samples is 0/0: an empty side is left out (its count is in the legend)
            ax.hist(
                values[side], bins=edges, density=True, alpha=0.6, color=colour, label=f"{name} ({count:,})"
            )
        else:
            ax.plot([], [], color=colour, alpha=0.6, label=f"{name} (none)")
    for threshold, name in zip(thresholds, (Band.yellow, Band.green), strict=True):
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.text(
            threshold + 0.5, ax.get_ylim()[1] * 0.95, f"{name} from {threshold:g}", fontsize=7, color="grey"
        )
    ax.set_xlabel("health score at the month start")
    ax.set_ylabel("density")
    ax.set_title("Score of churners vs non-churners (all month starts)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(figure, out / PLOT_FILES["scores"])


def alerts(result: Backtest, out: Path) -> Path:
    """Precision and recall of each alert rule."""
    stats = [s for s in result.alerts if s.alerts or s.caught]
    figure = Figure(figsize=(7.5, 0.42 * len(stats) + 1.4))
    ax = figure.subplots()
    positions = np.arange(len(stats))
    ax.barh(
        positions - 0.2, [100 * (s.precision or 0) for s in stats], 0.4, label="precision", color="#4a7bd0"
    )
    ax.barh(positions + 0.2, [100 * (s.recall or 0) for s in stats], 0.4, label="recall", color="#e08a2e")
    ax.set_yticks(positions, [f"{s.rule} ({s.alerts:,})" for s in stats], fontsize=8)
    ax.invert_yaxis()
    base = result.horizons[TUNE_HORIZON].labelled.churned
    if len(base):
        rate = 100 * float(base.mean())
        ax.axvline(rate, color="#4a7bd0", linestyle=":", linewidth=1)
        ax.annotate(
            f"base rate {rate:.1f}%",
            (rate, len(stats) - 0.4),
            fontsize=7,
            color="#4a7bd0",
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.set_xlim(0, 100)
    ax.set_xlabel(
        "% (precision: alert followed by churn within 60 days; recall: churns alerted in 60 days before)"
    )
    ax.xaxis.label.set_fontsize(7)
    ax.set_title("Alert rules (alerts raised in brackets)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, out / PLOT_FILES["alerts"])


def weights(tuning: TuneResult, out: Path) -> Path:
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    positions = np.arange(len(COMPONENTS))
    ax.bar(
        positions - 0.2,
        [tuning.default_weights[c] for c in COMPONENTS],
        0.4,
        label="default",
        color="#999999",
    )
    ax.bar(
        positions + 0.2, [tuning.tuned_weights[c] for c in COMPONENTS], 0.4, label="tuned", color="#4a7bd0"
    )
    ax.set_xticks(positions, list(COMPONENTS))
    ax.set_ylabel("component weight")
    held = " / ".join(
        f"{name} {auc_text(getattr(tuning, name).auc.get(TUNE_HORIZON))}" for name in ("default", "tuned")
    )
    ax.set_title(f"Component weights; held-out AUC {TUNE_HORIZON}d: {held}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, out / PLOT_FILES["weights"])


def calibration(tuning: TuneResult, out: Path) -> Path:
    """Predicted vs observed 60-day churn per decile of churn_risk_60d on the held-out range."""
    figure = Figure(figsize=(4.8, 4.4))
    ax = figure.subplots()
    bins = tuning.risk.calibration
    predicted = [b.predicted for b in bins]
    observed = [b.observed for b in bins]
    top = max([*predicted, *observed, 0.05]) * 1.1
    ax.plot([0, top], [0, top], color="#999999", linewidth=1, label="perfect calibration")
    ax.plot(predicted, observed, "o-", color="#4a7bd0", label="churn_risk_60d deciles")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted churn within 60 days")
    ax.set_ylabel("observed churn within 60 days")
    ax.set_title(
        f"Held out ({day(tuning.test_months[0])} on): Brier {tuning.risk.brier:.4f}, "
        f"AUC {auc_text(tuning.risk.auc.get(TUNE_HORIZON))}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(figure, out / PLOT_FILES["calibration"])


def write_all(result: Backtest, out: Path, thresholds: tuple[float, float] = (40, 70)) -> list[Path]:
    """Every plot that applies, into `out` (band thresholds: yellow, green); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [
        roc(result, out),
        auc_by_month(result, out),
        bands(result, out),
        scores(result, out, thresholds),
    ]
    written.append(alerts(result, out))
    if result.tuning is not None:
        written.append(weights(result.tuning, out))
        written.append(calibration(result.tuning, out))
    return written
