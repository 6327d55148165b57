"""Portfolio totals right now (MRR, accounts by band and stage, NPS, CSAT, CES, ART, FCR).

Each account contributes one small vector from its latest evaluation; a new evaluation replaces
the old vector, so the totals stay exact and partitions' totals add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamer.contract.vocabulary import BANDS, STAGES, LifecycleStage
from streamer.core.clock import HOUR
from streamer.core.money import format_money
from streamer.core.score import Evaluation

FIELDS = (
    "accounts",
    "paying_accounts",
    "mrr",
    *(f"band_{b}" for b in BANDS),  # accounts not churned, by band
    *(f"stage_{s}" for s in STAGES),
    "nps_promoters",
    "nps_detractors",
    "nps_respondents",
    "csat_satisfied",
    "csat_answers",
    "ces_sum",
    "ces_answers",
    "tickets_resolved_90d",
    "resolution_ms_90d",
    "first_contact_90d",
    "open_tickets",
)
_INDEX = {name: index for index, name in enumerate(FIELDS)}
_BAND_INDEX = {band: _INDEX[f"band_{band}"] for band in BANDS}  # read per evaluation: no f-string
_STAGE_INDEX = {stage: _INDEX[f"stage_{stage}"] for stage in STAGES}


def terms(evaluation: Evaluation) -> tuple[int, ...]:
    """One account's contribution vector (all integers, so sums are exact)."""
    facts = evaluation.facts
    vector = [0] * len(FIELDS)
    vector[_INDEX["accounts"]] = 1
    vector[_INDEX["paying_accounts"]] = int(evaluation.mrr > 0)
    vector[_INDEX["mrr"]] = evaluation.mrr
    if evaluation.stage != LifecycleStage.churned:  # a churned account keeps its last band, not counted
        vector[_BAND_INDEX[evaluation.band]] = 1
    vector[_STAGE_INDEX[evaluation.stage]] = 1
    counts = (
        facts.nps_promoters,
        facts.nps_detractors,
        facts.nps_respondents,
        facts.csat_satisfied,
        facts.csat_answers,
        facts.ces_sum,
        facts.ces_answers,
        facts.tickets_resolved_90d,
        facts.resolution_ms_90d,
        facts.first_contact_90d,
        facts.open_tickets,
    )  # FIELDS from nps_promoters on, in order
    vector[_INDEX["nps_promoters"] :] = [int(count or 0) for count in counts]
    return tuple(vector)


@dataclass(slots=True)
class Totals:
    sums: list[int] = field(default_factory=lambda: [0] * len(FIELDS))
    contributions: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def update(self, account_id: str, new: tuple[int, ...]) -> None:
        """Replace the account's contribution vector (see `terms`)."""
        old = self.contributions.get(account_id)
        if old == new:
            return
        self.contributions[account_id] = new
        sums = self.sums
        if old is not None:
            for index, value in enumerate(old):
                sums[index] -= value
        for index, value in enumerate(new):
            sums[index] += value


def counted(stored: tuple[int, ...]) -> tuple[int, ...]:
    """Terms as `terms` makes them now, from ones an earlier version stored (a churned account's
    band was counted then)."""
    if not stored[_STAGE_INDEX[LifecycleStage.churned]]:
        return stored
    vector = list(stored)
    for index in _BAND_INDEX.values():
        vector[index] = 0
    return tuple(vector)


def add_up(parts: Iterable[list[int]]) -> list[int]:
    total = [0] * len(FIELDS)
    for part in parts:
        for index, value in enumerate(part):
            total[index] += value
    return total


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    return round(scale * numerator / denominator, 4) if denominator else None


def report(sums: list[int], currency: str) -> dict[str, Any]:
    """The `current` object of the portfolio: totals now, in reporting terms."""
    s = dict(zip(FIELDS, sums, strict=True))
    return {
        "currency": currency,
        "accounts": s["accounts"],
        "paying_accounts": s["paying_accounts"],
        "mrr": format_money(s["mrr"]),
        "arr": format_money(12 * s["mrr"]),
        "arpa": format_money(s["mrr"] // s["paying_accounts"]) if s["paying_accounts"] else None,
        "accounts_by_band": {band.value: s[f"band_{band}"] for band in BANDS},
        "accounts_by_stage": {stage.value: s[f"stage_{stage}"] for stage in STAGES},
        "nps": _ratio(s["nps_promoters"] - s["nps_detractors"], s["nps_respondents"], 100),
        "nps_respondents": s["nps_respondents"],
        "csat": _ratio(s["csat_satisfied"], s["csat_answers"], 100),
        "ces": _ratio(s["ces_sum"], s["ces_answers"]),
        "art_hours_90d": _ratio(s["resolution_ms_90d"], s["tickets_resolved_90d"] * HOUR),
        "fcr_90d": _ratio(s["first_contact_90d"], s["tickets_resolved_90d"]),
        "open_tickets": s["open_tickets"],
    }
