"""Build the published health snapshot of an account from its latest evaluation."""

from __future__ import annotations

from typing import Any

from streamer.core.account import Account
from streamer.core.clock import bucket_of, iso
from streamer.core.config import COMPONENTS, RiskModel
from streamer.core.identity import profile_record
from streamer.core.money import format_money
from streamer.core.overrides import override_record
from streamer.core.peers import COMPOSITE, PEER_SIGNALS
from streamer.core.reasons import explain
from streamer.core.risk import VOLUME_DAYS, churn_risk
from streamer.core.score import Evaluation


def build_snapshot(
    account: Account, evaluation: Evaluation, currency: str, model: RiskModel | None = None
) -> dict[str, Any]:
    """The `cs.health` record: score, band, components, reasons, stage, MRR, key metrics, and the
    calibrated churn risk when the configuration carries a fitted model and the account pays
    (else null: the model was fitted on paying accounts, and one at MRR 0 has no churn ahead)."""
    missing = [name for name, value in evaluation.components.items() if value is None]
    return {
        "account_id": account.account_id,
        "as_of": iso(evaluation.now),
        "score": evaluation.score,
        "band": evaluation.band,
        "churn_risk_60d": churn_risk(
            evaluation.signals, model, _volumes(account, evaluation, model), _model_score(evaluation)
        )
        if evaluation.mrr > 0
        else None,  # churn is MRR reaching 0: an account paying nothing has none ahead
        "components": {
            name: {
                "score": None if value is None else round(value, 1),
                "weight": round(evaluation.weights[name], 4),
                "missing": value is None,
            }
            for name, value in evaluation.components.items()
        },
        "missing": missing,
        "reasons": explain(evaluation),
        "lifecycle_stage": evaluation.stage,
        "plan": evaluation.plan,
        "currency": currency,
        "mrr": format_money(evaluation.mrr),
        "arr": format_money(evaluation.mrr * 12),
        "metrics": evaluation.facts.to_json(),
        "comments": [
            {"at": iso(at), "survey": kind, "score": score, "comment": text}
            for at, _, kind, score, text in reversed(account.sentiment.comments)
        ],
        "peers": _peers(evaluation),
        "profile": profile_record(account.profile),
        "override": override_record(evaluation.override),
    }


# What the projection's history keeps of one scoring (streamer.projection.history formats it):
# as_of, score, band, stage, MRR (minor units), the components (COMPONENTS order, None: missing),
# open tickets, reopens in 90 days, payment failures in 30 days, NPS respondents, the scheduled
# cancellation and renewal instants, events in 28 days, days since last use, the override's band.
# A tuple of atoms: the engine holds many of them between two batches' ends, and the collector
# stops tracking such tuples (the evaluations they are taken from cost it 15% of the engine's time).
PointFigures = tuple[
    int,
    float,
    str,
    str,
    int,
    tuple[float | None, ...],
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    float | None,
    str | None,
]


def point_figures(evaluation: Evaluation) -> PointFigures:
    """The figures of `evaluation` that a history point keeps (see `PointFigures`)."""
    facts = evaluation.facts
    components = evaluation.components
    override = evaluation.override
    return (
        evaluation.now,
        evaluation.score,
        str(evaluation.band),
        str(evaluation.stage),
        evaluation.mrr,
        tuple([components.get(name) for name in COMPONENTS]),
        facts.open_tickets,
        facts.reopens_90d,
        facts.payment_failures_30d,
        facts.nps_respondents,
        facts.scheduled_cancellation_at,
        facts.renewal_at,
        facts.events_28d,
        facts.days_since_last_use,
        None if override is None else _forced_band(override.override.band, evaluation.band),
    )


def _forced_band(asked: str | None, in_force: str) -> str:
    """The band an override puts the account in: the one asked for, or, when a score was asked
    for, the band of that score (the evaluation's, an override's): a score override showed as
    none in the history, its timeline and the exports."""
    return str(asked) if asked is not None else str(in_force)


def _model_score(evaluation: Evaluation) -> float:
    """The score a `[model]` reads: the model's own, not a person's override (the model was
    calibrated on computed scores, and the other models read the signals, which no override
    changes)."""
    override = evaluation.override
    return evaluation.score if override is None else override.computed_score


def _volumes(account: Account, evaluation: Evaluation, model: RiskModel | None) -> dict[str, int]:
    """The account's events per feature over the model's window (only when the model reads them)."""
    if model is None or not model.feature_volumes:
        return {}
    return account.usage.feature_volume(bucket_of(evaluation.now), VOLUME_DAYS)


def _peers(evaluation: Evaluation) -> dict[str, Any] | None:
    if evaluation.peer_group is None:
        return None
    facts = evaluation.facts
    percentiles = {
        name: value
        for name in (*PEER_SIGNALS, COMPOSITE)
        if (value := facts.percentiles.get(name)) is not None
    }
    return {
        "group": evaluation.peer_group,
        "size": facts.peer_group_size or 0,
        "percentiles": percentiles,
    }
