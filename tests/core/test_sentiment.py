"""Sentiment: NPS over each respondent's latest answer in 180 days, CSAT, CES, kept comments."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.config import Limits, ScoreConfig
from streamer.offline.runner import OfflineRun

from .events import at, ces, csat, nps, raw
from .harness import Feed

NOW = at(200, 12)  # the 180-day window holds answers from day 21 00:00 on


def test_nps_over_latest_answer_per_respondent_within_180_days() -> None:
    feed = Feed()
    feed(
        nps("acme", at(20), 10, "r3"),  # older than 180 days: not counted
        nps("acme", at(100), 2, "r1"),
        nps("acme", at(150), 9, "r1"),  # r1's latest: promoter
        nps("acme", at(180), 5, "r2"),  # detractor
        nps("acme", at(195), 7, "r4"),  # passive
        nps("acme", at(199), 10, "r5"),  # promoter
    )
    facts = feed.facts("acme", NOW)
    assert facts.nps_respondents == 4
    assert (facts.nps_promoters, facts.nps_detractors) == (2, 1)
    assert facts.nps == pytest.approx(100 * (2 - 1) / 4)


def test_nps_range_ends() -> None:
    feed = Feed()
    feed(nps("acme", at(1), 10, "r1"), nps("acme", at(1), 9, "r2"), nps("globex", at(1), 0, "r1"))
    assert feed.facts("acme", at(2)).nps == 100
    assert feed.facts("globex", at(2)).nps == -100


def test_nps_latest_answer_wins_when_an_older_one_arrives_late() -> None:
    feed = Feed()
    feed(nps("acme", at(10), 3, "r1"), nps("acme", at(8), 10, "r1"))
    facts = feed.facts("acme", at(11))
    assert facts.nps_respondents == 1
    assert facts.nps == -100


def test_account_without_survey_has_no_nps_and_no_sentiment_component() -> None:
    feed = Feed()
    feed(csat("acme", at(1), 5), nps("globex", at(1), 10))
    evaluation = feed.evaluate("acme", at(2))
    assert evaluation.facts.nps is None
    assert "nps" not in evaluation.signals


def test_csat_is_percent_of_answers_that_are_4_or_5() -> None:
    feed = Feed()
    feed(
        csat("acme", at(10), 5),  # older than 180 days at NOW
        csat("acme", at(150), 5),
        csat("acme", at(160), 4),
        csat("acme", at(170), 3),
        csat("acme", at(180), 1),
    )
    facts = feed.facts("acme", NOW)
    assert (facts.csat_satisfied, facts.csat_answers) == (2, 4)
    assert facts.csat == pytest.approx(50.0)


def test_ces_is_the_mean_score() -> None:
    feed = Feed()
    feed(ces("acme", at(10), 1), ces("acme", at(150), 7), ces("acme", at(160), 5), ces("acme", at(170), 3))
    facts = feed.facts("acme", NOW)
    assert facts.ces == pytest.approx(5.0)
    assert facts.ces_answers == 3


def test_latest_comments_are_kept_newest_first_and_bounded() -> None:
    feed = Feed(ScoreConfig(limits=Limits(max_comments=3)))
    feed(
        nps("acme", at(1), 3, "r1", "too slow"),
        csat("acme", at(2), 2, "r2", "support never answered"),
        nps("acme", at(4), 9, "r3", "love the new reports"),
        nps("acme", at(5), 10, "r4"),  # no comment
        ces("acme", at(6), 6, "r5", "easy export"),
        csat("acme", at(3), 4, "r6", "ok now"),  # late, older than the last three
    )
    comments = feed.snapshot("acme")["comments"]
    assert [c["comment"] for c in comments] == ["easy export", "love the new reports", "ok now"]
    assert comments[0] == {
        "at": "2024-01-07T00:00:00Z",
        "survey": "ces",
        "score": 6,
        "comment": "easy export",
    }


def test_default_comment_bound() -> None:
    feed = Feed()
    feed(*(nps("acme", at(n), 5, f"r{n}", f"comment {n}") for n in range(12)))
    comments = feed.snapshot("acme")["comments"]
    assert [c["comment"] for c in comments] == [f"comment {n}" for n in range(11, 6, -1)]


def test_respondent_count_is_bounded() -> None:
    feed = Feed(ScoreConfig(limits=Limits(max_respondents=10, max_survey_answers=5)))
    feed(*(nps("acme", at(n / 10), 9, f"r{n}") for n in range(40)))
    feed(*(csat("acme", at(5 + n / 10), 5, f"r{n}") for n in range(40)))
    sentiment = feed.account("acme").sentiment
    assert sentiment.nps_count <= 10
    assert sentiment.csat_count <= 5


def test_a_late_answer_older_than_every_kept_one_does_not_push_a_later_one_out() -> None:
    # At the respondent cap, an answer arriving late (within the allowed lateness) from a new
    # respondent used to push out the oldest answer kept, though it was itself older: the
    # answers kept then depended on the order they came in, and a worker fed in arrival order
    # disagreed with `streamer offline --sort`.
    late = [nps("acme", at(2), 0, "a"), nps("acme", at(4), 0, "b"), nps("acme", at(3), 10, "c")]
    in_order = sorted(late, key=lambda event: event.occurred_at)
    kept = []
    for lines in (late, in_order):
        feed = Feed(ScoreConfig(limits=Limits(max_respondents=2)))
        feed(*lines)
        sentiment = feed.account("acme").sentiment
        kept.append(sorted(zip(sentiment.respondents, sentiment.answers("nps"), strict=True)))
    assert kept[0] == kept[1]
    assert [respondent for respondent, _ in kept[0]] == ["b", "c"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from("abcdef"), st.integers(0, 10)), min_size=1, max_size=12
    ).flatmap(lambda answers: st.tuples(st.just(answers), st.permutations(range(len(answers))))),
    st.integers(1, 4),
)
def test_the_answers_kept_do_not_depend_on_their_order(
    drawn: tuple[list[tuple[int, str, int]], list[int]], max_respondents: int
) -> None:
    from streamer.core.clock import DAY
    from streamer.core.sentiment import Sentiment

    answers, order = drawn

    def kept(sequence: list[int]) -> list[tuple[str, tuple[int, str, int]]]:
        sentiment = Sentiment()
        for n in sequence:
            day, respondent, score = answers[n]
            sentiment.answered(
                "nps",
                (20_000 + day) * DAY,
                f"e{n}",
                respondent,
                score,
                None,
                max_respondents=max_respondents,
                max_answers=10,
                max_comments=0,
            )
        return sorted(zip(sentiment.respondents, sentiment.answers("nps"), strict=True))

    assert kept(order) == kept(sorted(order))


def test_portfolio_nps_is_over_all_respondents() -> None:
    lines = [
        raw("survey.answered", "acme", at(1), survey="nps", score=10, respondent_id="r1"),
        raw("survey.answered", "acme", at(1, 1), survey="nps", score=10, respondent_id="r2"),
        raw("survey.answered", "globex", at(1, 2), survey="nps", score=0, respondent_id="r1"),
    ]
    run = OfflineRun(ScoreConfig(), partitions=2)
    run.feed(
        iter(orjson.dumps(line) for line in lines),
        on_snapshot=lambda _: None,
        on_alert=lambda _: None,
        on_dead_letter=lambda _: None,
    )
    current = run.portfolio()["current"]
    assert current["nps_respondents"] == 3
    assert current["nps"] == pytest.approx(100 * (2 - 1) / 3, abs=1e-4)  # not the mean of 100 and -100


def test_answer_stamped_at_midnight_counts_in_its_own_snapshot() -> None:
    feed = Feed()
    feed(nps("acme", "2024-01-02T00:00:00Z", 2, "r1"))
    snap = feed.snapshot("acme")
    assert snap["metrics"]["nps"] == -100
    assert snap["metrics"]["nps_respondents"] == 1


def test_the_figures_memo_every_sentiment_starts_with_stays_empty_and_shared() -> None:
    # Every Sentiment starts with one shared empty memo (memory per account); using one must
    # neither write into it nor let another Sentiment see that one's figures.
    from streamer.core.clock import DAY
    from streamer.core.sentiment import Sentiment

    first, second = Sentiment(), Sentiment()
    assert first._memo is second._memo
    first.answered("nps", 100 * DAY, "e1", "r1", 10, None, max_respondents=10, max_answers=10, max_comments=0)
    assert first.figures(100)["nps"] == 100.0
    assert second._memo == {} and first._memo is not second._memo
    assert "nps" not in second.figures(100)
