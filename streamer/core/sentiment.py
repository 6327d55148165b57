"""Survey answers per account: NPS over each respondent's latest answer, CSAT, CES, comments."""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import TypedDict

from streamer.core.clock import DAY

WINDOW_DAYS = 180  # answers older than this no longer count


class Figures(TypedDict, total=False):
    """The survey figures over the window (each group only when it has answers)."""

    nps: float
    nps_respondents: int
    nps_promoters: int
    nps_detractors: int
    csat: float
    csat_satisfied: int
    csat_answers: int
    ces: float
    ces_sum: int
    ces_answers: int


def nps_of(scores: list[int]) -> float | None:
    """NPS = % promoters (9-10) - % detractors (0-6); None without answers."""
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return 100.0 * (promoters - detractors) / len(scores)


# The memo every Sentiment starts with: one object for all (64 bytes each otherwise). It is never
# read (no version is -1) nor written: `figures` replaces the memo whole.
_NO_FIGURES = Figures()


@dataclass(slots=True)
class Sentiment:
    nps: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # respondent -> (at, id, score)
    csat: list[tuple[int, str, int]] = field(default_factory=list)  # (at, event id, score), sorted
    ces: list[tuple[int, str, int]] = field(default_factory=list)
    comments: list[tuple[int, str, str, int, str]] = field(default_factory=list)  # at,id,kind,score,text
    version: int = 0  # bumped on every answer; keys the figures memo
    _memo_key: tuple[int, int] = (-1, -1)
    _memo: Figures = field(default_factory=lambda: _NO_FIGURES)  # replaced whole, never written

    def answered(
        self,
        kind: str,
        at: int,
        event_id: str,
        respondent: str,
        score: int,
        comment: str | None,
        *,
        max_respondents: int,
        max_answers: int,
        max_comments: int,
    ) -> None:
        self.version += 1
        if kind == "nps":
            latest = self.nps.get(respondent)
            if latest is None and len(self.nps) >= max_respondents:
                del self.nps[min(self.nps, key=self.nps.__getitem__)]
            if latest is None or (at, event_id) > latest[:2]:
                self.nps[respondent] = (at, event_id, score)
        else:
            answers = self.csat if kind == "csat" else self.ces
            insort(answers, (at, event_id, score))
            if len(answers) > max_answers:
                del answers[0]
        if comment and max_comments:
            insort(self.comments, (at, event_id, kind, score, comment))
            if len(self.comments) > max_comments:
                del self.comments[0]

    def figures(self, end: int) -> Figures:
        """NPS, CSAT and CES figures over the answers up to the end of day `end` (memoised)."""
        if self._memo_key != (self.version, end):
            self._memo_key, self._memo = (self.version, end), self._figures(end)
        return self._memo

    def _figures(self, end: int) -> Figures:
        horizon = (end + 1) * DAY  # answers up to the end of bucket `end` (midnight included) ...
        since = horizon - WINDOW_DAYS * DAY  # ... and within the window before it
        figures: Figures = {}
        nps_scores = [s for at, _, s in self.nps.values() if since < at <= horizon]
        nps = nps_of(nps_scores)
        if nps is not None:
            figures["nps"] = nps
            figures["nps_respondents"] = len(nps_scores)
            figures["nps_promoters"] = sum(1 for s in nps_scores if s >= 9)
            figures["nps_detractors"] = sum(1 for s in nps_scores if s <= 6)
        csat = [s for at, _, s in self.csat if since < at <= horizon]
        if csat:
            satisfied = sum(1 for s in csat if s >= 4)
            figures["csat"] = 100.0 * satisfied / len(csat)
            figures["csat_satisfied"], figures["csat_answers"] = satisfied, len(csat)
        ces = [s for at, _, s in self.ces if since < at <= horizon]
        if ces:
            figures["ces"] = sum(ces) / len(ces)
            figures["ces_sum"], figures["ces_answers"] = sum(ces), len(ces)
        return figures
