"""Survey answers per account: NPS over each respondent's latest answer, CSAT, CES, comments."""

from __future__ import annotations

from array import array
from bisect import insort
from dataclasses import dataclass, field
from typing import TypedDict

from streamer.core.clock import DAY
from streamer.core.usage import Pairs

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

NUMBERS = "q"  # typecode of `Sentiment.numbers`: signed 64-bit


@dataclass(slots=True)
class Sentiment:
    """The answers kept: NPS (each respondent's latest), then CSAT, then CES, one after the other.

    Flat (issue 11, resident bytes per account): answer i has its event id at `ids[i]` and its
    (event time, score) at `numbers[2i:2i+2]`; the first `nps_count` are the NPS answers, in the
    order their respondents first answered, with their respondent at `respondents[i]`; the next
    `csat_count` the CSAT answers and the rest the CES answers, each sorted by (time, event id,
    score). About 16 bytes an answer beside its ids, where a tuple with its int took 100.
    """

    ids: list[str] = field(default_factory=list)
    numbers: Pairs = field(default_factory=lambda: array(NUMBERS))
    respondents: list[str] = field(default_factory=list)
    nps_count: int = 0
    csat_count: int = 0
    comments: list[tuple[int, str, str, int, str]] = field(default_factory=list)  # at,id,kind,score,text
    version: int = 0  # bumped on every answer; keys the figures memo
    _memo_key: tuple[int, int] = (-1, -1)
    _memo: Figures = field(default_factory=lambda: _NO_FIGURES)  # replaced whole, never written

    def span(self, kind: str) -> tuple[int, int]:
        """Where the answers of `kind` ("nps", "csat" or another: CES) are: [start, stop)."""
        if kind == "nps":
            return 0, self.nps_count
        if kind == "csat":
            return self.nps_count, self.nps_count + self.csat_count
        return self.nps_count + self.csat_count, len(self.ids)

    def answers(self, kind: str) -> list[tuple[int, str, int]]:
        """The (event time, event id, score) of the answers of `kind`, in their order."""
        start, stop = self.span(kind)
        numbers = self.numbers
        return [(numbers[2 * i], self.ids[i], numbers[2 * i + 1]) for i in range(start, stop)]

    def add_answer(self, kind: str, at: int, event_id: str, score: int, respondent: str = "") -> None:
        """Append an answer at the end of its kind (the codec's decoder: answers come in order)."""
        _, stop = self.span(kind)
        self._insert(stop, at, event_id, score)
        if kind == "nps":
            self.respondents.append(respondent)
            self.nps_count += 1
        elif kind == "csat":
            self.csat_count += 1

    def _insert(self, i: int, at: int, event_id: str, score: int) -> None:
        self.ids.insert(i, event_id)
        self.numbers.insert(2 * i, score)
        self.numbers.insert(2 * i, at)

    def _delete(self, i: int) -> None:
        del self.ids[i]
        del self.numbers[2 * i : 2 * i + 2]

    def _answer(self, i: int) -> tuple[int, str, int]:
        return self.numbers[2 * i], self.ids[i], self.numbers[2 * i + 1]

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
            self._nps(at, event_id, respondent, score, max_respondents)
        else:
            start, stop = self.span(kind)
            new = (at, event_id, score)
            i = stop  # sorted: insert after every answer up to the new one (`insort`)
            while i > start and self._answer(i - 1) > new:
                i -= 1
            self._insert(i, at, event_id, score)
            if kind == "csat":
                self.csat_count += 1
            if stop + 1 - start > max_answers:
                self._delete(start)
                if kind == "csat":
                    self.csat_count -= 1
        if comment and max_comments:
            insort(self.comments, (at, event_id, kind, score, comment))
            if len(self.comments) > max_comments:
                del self.comments[0]

    def _nps(self, at: int, event_id: str, respondent: str, score: int, max_respondents: int) -> None:
        """Keep the respondent's latest answer (by time, then event id), for the
        `max_respondents` respondents whose latest answers are the latest: whatever order the
        answers come in, the same ones are kept."""
        try:
            i = self.respondents.index(respondent)
        except ValueError:
            i = -1
        if i < 0:
            if self.nps_count >= max_respondents:  # forget the oldest answer, the new one included
                oldest = 0
                for j in range(1, self.nps_count):
                    if self._answer(j) < self._answer(oldest):
                        oldest = j
                if (at, event_id, score) < self._answer(oldest):
                    return  # a late answer older than every one kept: it would be the one forgotten
                self._delete(oldest)
                del self.respondents[oldest]
                self.nps_count -= 1
            self.add_answer("nps", at, event_id, score, respondent)
        elif (at, event_id) > (self.numbers[2 * i], self.ids[i]):
            self.numbers[2 * i] = at
            self.numbers[2 * i + 1] = score
            self.ids[i] = event_id

    def figures(self, end: int) -> Figures:
        """NPS, CSAT and CES figures over the answers up to the end of day `end` (memoised)."""
        if self._memo_key != (self.version, end):
            self._memo_key, self._memo = (self.version, end), self._figures(end)
        return self._memo

    def _scores(self, kind: str, since: int, horizon: int) -> list[int]:
        """The scores of the answers of `kind` with since < time <= horizon."""
        start, stop = self.span(kind)
        numbers = self.numbers
        return [numbers[2 * i + 1] for i in range(start, stop) if since < numbers[2 * i] <= horizon]

    def _figures(self, end: int) -> Figures:
        horizon = (end + 1) * DAY  # answers up to the end of bucket `end` (midnight included) ...
        since = horizon - WINDOW_DAYS * DAY  # ... and within the window before it
        figures: Figures = {}
        nps_scores = self._scores("nps", since, horizon)
        nps = nps_of(nps_scores)
        if nps is not None:
            figures["nps"] = nps
            figures["nps_respondents"] = len(nps_scores)
            figures["nps_promoters"] = sum(1 for s in nps_scores if s >= 9)
            figures["nps_detractors"] = sum(1 for s in nps_scores if s <= 6)
        csat = self._scores("csat", since, horizon)
        if csat:
            satisfied = sum(1 for s in csat if s >= 4)
            figures["csat"] = 100.0 * satisfied / len(csat)
            figures["csat_satisfied"], figures["csat_answers"] = satisfied, len(csat)
        ces = self._scores("ces", since, horizon)
        if ces:
            figures["ces"] = sum(ces) / len(ces)
            figures["ces_sum"], figures["ces_answers"] = sum(ces), len(ces)
        return figures
