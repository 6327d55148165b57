"""Query parameters: every mistake is a 400 with a message that says what to fix."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from multidict import MultiDict

from streamer.core.clock import parse_month
from streamer.view.errors import BadRequest
from streamer.view.params import (
    account_query,
    alert_query,
    history_query,
    no_params,
    period_query,
    timeline_query,
    wants_csv,
)
from streamer.view.queries import AlertQuery
from streamer.view.security import token_matches

PLAIN_DECIMAL = "'min_mrr' must be a decimal number in the digits 0-9, such as 1000 or 99.50"


def q(**values: str) -> MultiDict[str]:
    return MultiDict(values)


def test_account_list_defaults() -> None:
    query = account_query(q())
    assert (query.sort, query.descending, query.limit, query.offset) == ("score", False, 50, 0)
    assert query.bands == () and query.min_mrr is None and not query.at_risk


def test_account_list_parses_every_filter() -> None:
    query = account_query(
        MultiDict(
            [
                ("band", "red, yellow"),
                ("stage", "renewal"),
                ("plan", "enterprise"),
                ("plan", "team"),
                ("renewal_within_days", "60"),
                ("min_mrr", "999.50"),
                ("at_risk", "true"),
                ("sort", "-mrr"),
                ("limit", "10"),
                ("offset", "20"),
            ]
        )
    )
    assert query.bands == ("red", "yellow") and query.stages == ("renewal",)
    assert query.plans == ("enterprise", "team")
    assert query.renewal_within_days == 60 and query.min_mrr == Decimal("999.50") and query.at_risk
    assert (query.sort, query.descending, query.limit, query.offset) == ("mrr", True, 10, 20)


def test_repeated_list_parameters_add_up() -> None:
    assert account_query(MultiDict([("band", "red"), ("band", "yellow")])).bands == ("red", "yellow")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"band": "purple"}, "'band' must be one of green, yellow, red; got 'purple'"),
        ({"stage": "trial"}, "'stage' must be one of onboarding, adopted, renewal, churned; got 'trial'"),
        ({"limit": "0"}, "'limit' must be between 1 and 500, got 0"),
        ({"limit": "lots"}, "'limit' must be an integer in the digits 0-9, got 'lots'"),
        ({"offset": "-1"}, "'offset' must be between 0 and 1000000, got -1"),
        ({"min_mrr": "abc"}, f"{PLAIN_DECIMAL}, got 'abc'"),
        ({"min_mrr": "-5"}, "'min_mrr' must be a finite number >= 0, got '-5'"),
        ({"min_mrr": "NaN"}, f"{PLAIN_DECIMAL}, got 'NaN'"),
        ({"renewal_within_days": "1e3"}, "'renewal_within_days' must be an integer in the digits 0-9"),
        ({"at_risk": "maybe"}, "'at_risk' must be true or false, got 'maybe'"),
        (
            {"sort": "name"},
            "'sort' must be one of score, -score, mrr, -mrr, renewal, -renewal, churn_risk, -churn_risk; "
            "got 'name'",
        ),
        ({"colour": "red"}, "unknown query parameter 'colour'; expected: band, stage, plan"),
        ({"band": ""}, "'band' is empty"),
        ({"limit": ""}, "'limit' is empty"),
    ],
)
def test_bad_account_list_parameters(values: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        account_query(q(**values))
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"limit": "\uff15"}, "'limit' must be an integer in the digits 0-9, got '\uff15'"),  # fullwidth 5
        ({"limit": "1_0"}, "'limit' must be an integer in the digits 0-9, got '1_0'"),
        ({"offset": "\u0661\u0662"}, "'offset' must be an integer in the digits 0-9, got '\u0661\u0662'"),
        (
            {"renewal_within_days": "+30"},
            "'renewal_within_days' must be an integer in the digits 0-9, got '+30'",
        ),
        ({"min_mrr": "\uff11"}, f"{PLAIN_DECIMAL}, got '\uff11'"),
        ({"min_mrr": "1_000"}, f"{PLAIN_DECIMAL}, got '1_000'"),
        ({"min_mrr": "1e3"}, f"{PLAIN_DECIMAL}, got '1e3'"),
        ({"min_mrr": "99."}, f"{PLAIN_DECIMAL}, got '99.'"),
        ({"min_mrr": ".5"}, f"{PLAIN_DECIMAL}, got '.5'"),
        ({"min_mrr": "+5"}, f"{PLAIN_DECIMAL}, got '+5'"),
        ({"min_mrr": "Infinity"}, f"{PLAIN_DECIMAL}, got 'Infinity'"),
        ({"min_mrr": "-0"}, "'min_mrr' must be a finite number >= 0, got '-0'"),
    ],
)
def test_numbers_are_ascii_digits_only(values: dict[str, str], message: str) -> None:
    """Python's int() and Decimal() also take other scripts' digits and underscores, so
    `limit=\uff15` was a page of 5: each is now refused with the form expected."""
    with pytest.raises(BadRequest) as caught:
        account_query(q(**values))
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("values", "name", "raw"),
    [
        ({"month": "\uff12\uff10\uff12\uff14-02"}, "month", "\uff12\uff10\uff12\uff14-02"),
        ({"month": "2024_0-02"}, "month", "2024_0-02"),  # was "must be a month from 1970-01 to 2999-12"
        ({"month": "2024-\uff12"}, "month", "2024-\uff12"),
        ({"from": "+2024-01-01", "to": "2024-03-01"}, "from", "+2024-01-01"),
        ({"from": "2024-01-01", "to": "2024-03-0\uff11"}, "to", "2024-03-0\uff11"),
    ],
)
def test_months_are_ascii_digits_only(values: dict[str, str], name: str, raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        period_query(q(**values))
    assert caught.value.message == (
        f"{name!r}: expected a month 'YYYY-MM' or a first-of-month date 'YYYY-MM-01' "
        f"in the digits 0-9, got {raw!r}"
    )


def test_plain_numbers_are_still_taken() -> None:
    query = account_query(q(limit="07", offset="0", renewal_within_days=" 30 ", min_mrr="0099.50"))
    assert (query.limit, query.offset, query.renewal_within_days) == (7, 0, 30)
    assert query.min_mrr == Decimal("99.50")
    assert period_query(q(month="2024-02")) == (parse_month("2024-02"), parse_month("2024-03"))


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(BadRequest, match="'limit' given 2 times"):
        account_query(MultiDict([("limit", "1"), ("limit", "2")]))


def test_period_by_month_or_by_dates() -> None:
    march = parse_month("2024-03")
    assert period_query(q(month="2024-03")) == (march, march + 1)
    assert period_query(q(**{"from": "2024-01-01", "to": "2024-04-01"})) == (march - 2, march + 1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "give 'month' (YYYY-MM) or both 'from' and 'to'"),
        ({"from": "2024-01-01"}, "give 'month' (YYYY-MM) or both 'from' and 'to'"),
        ({"month": "2024-13"}, "'month': month 13 in '2024-13' is not 1..12"),
        ({"month": "March"}, "'month': expected a month 'YYYY-MM'"),
        (
            {"from": "2024-01-15", "to": "2024-03-01"},
            "'from': expected a month 'YYYY-MM' or a first-of-month",
        ),
        ({"from": "2024-03-01", "to": "2024-01-01"}, "'from' (2024-03-01) must be before 'to' (2024-01-01)"),
        ({"month": "2024-03", "from": "2024-01-01"}, "give either 'month' or 'from' and 'to', not both"),
        ({"month": "99999-01"}, "'month' must be a month from 1970-01 to 2999-12, got '99999-01'"),
        ({"month": "0000-01"}, "'month' must be a month from 1970-01 to 2999-12, got '0000-01'"),
        ({"month": "1969-12"}, "'month' must be a month from 1970-01 to 2999-12"),
        ({"month": "3000-01"}, "'month' must be a month from 1970-01 to 2999-12"),
        ({"month": "-5-01"}, "'month': expected digits in '-5-01'"),
        ({"from": "0000-01-01", "to": "2024-01-01"}, "'from' must be a month from 1970-01"),
        ({"from": "2024-01-01", "to": "99999999999999999999-01-01"}, "'to' must be a month from 1970-01"),
    ],
)
def test_bad_periods(values: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        period_query(q(**values))
    assert caught.value.message.startswith(message)


def test_the_edges_of_the_month_range_are_answered() -> None:
    assert period_query(q(month="1970-01")) == (1970 * 12, 1970 * 12 + 1)
    assert period_query(q(month="2999-12")) == (3000 * 12 - 1, 3000 * 12)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (lambda: account_query(q(plan="p" * 257)), "'plan' values must be at most 256 characters"),
        (lambda: account_query(q(min_mrr="1" + "0" * 13)), "'min_mrr' must be at most 1,000,000,000,000"),
        (lambda: account_query(q(min_mrr="9" * 256)), "'min_mrr' must be at most"),
        (lambda: account_query(q(min_mrr="1000000000000.01")), "'min_mrr' must be at most"),
        (lambda: account_query(q(limit="9" * 5000)), "'limit' must be at most 256 characters"),
        (lambda: account_query(q(limit="9" * 200)), "'limit' must be between 1 and 500"),
        (lambda: account_query(q(offset="1000001")), "'offset' must be between 0 and 1000000"),
        (lambda: account_query(q(renewal_within_days="3651")), "'renewal_within_days' must be between"),
        (lambda: alert_query(q(account_id="a" * 257)), "'account_id' must be at most 256 characters"),
        (lambda: alert_query(q(rule="r" * 257)), "'rule' values must be at most 256 characters"),
        (lambda: alert_query(q(limit="501")), "'limit' must be between 1 and 500"),
    ],
)
def test_every_parameter_is_bounded(query: Callable[[], object], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        query()
    assert caught.value.message.startswith(message)


def test_tokens_compare_as_bytes_whatever_they_hold() -> None:
    assert token_matches("s3cret", "s3cret") and token_matches("sécret", "sécret")
    assert not token_matches("s\udce9cret", "sécret")  # an undecodable byte, as aiohttp keeps it
    assert not token_matches("\udcff" * 3, "s3cret") and not token_matches("", "s3cret")


def test_alert_parameters() -> None:
    assert alert_query(q(limit="5", severity="critical,warning", account_id="a-1")) == AlertQuery(
        limit=5, account_id="a-1", severities=("critical", "warning")
    )
    with pytest.raises(BadRequest, match="'severity' must be one of info, warning, critical"):
        alert_query(q(severity="fatal"))
    several = MultiDict(
        [("offset", "40"), ("owner", "ann"), ("owner", "bo"), ("segment", "smb"), ("rule", "silence")]
    )
    assert alert_query(several) == AlertQuery(
        offset=40, owners=("ann", "bo"), segments=("smb",), rules=("silence",)
    )
    assert alert_query(q(format="csv")).limit == 100_000  # an export: every kept alert
    with pytest.raises(BadRequest, match="'format' must be one of json, csv; got 'xml'"):
        alert_query(q(format="xml"))
    with pytest.raises(BadRequest, match="unknown query parameter 'owner'"):
        alert_query(q(owner="ann"), account_id="a-1")  # one account's alerts: no owner filter


def test_an_alert_list_for_an_id_with_spaces_names_that_id_as_it_is() -> None:
    assert alert_query(q(account_id="acct-1 ")).account_id == "acct-1 "  # not acct-1's alerts
    assert alert_query(q(account_id=" a b ")).account_id == " a b "
    with pytest.raises(BadRequest, match="'account_id' is empty"):
        alert_query(q(account_id="  "))
    with pytest.raises(BadRequest, match="'account_id' given 2 times"):
        alert_query(MultiDict([("account_id", "a"), ("account_id", "b")]))


def test_account_list_filters_owner_segment_and_search() -> None:
    query = account_query(
        MultiDict([("owner", "ann@x.io"), ("segment", "smb"), ("segment", "mid"), ("q", "  Acme ")])
    )
    assert (query.owners, query.segments, query.search) == (("ann@x.io",), ("smb", "mid"), "Acme")


def test_owners_and_segments_are_taken_exactly_as_given() -> None:
    """The contract takes an owner "Smith, Ana" and a segment " enterprise ": the filters must
    reach them, so their values are never split on commas or trimmed (repeat for several)."""
    query = account_query(q(owner="Smith, Ana", segment=" enterprise "))
    assert (query.owners, query.segments) == (("Smith, Ana",), (" enterprise ",))
    assert alert_query(q(owner="Smith, Ana")).owners == ("Smith, Ana",)
    with pytest.raises(BadRequest, match="'owner' is empty"):
        account_query(q(owner="  "))
    with pytest.raises(BadRequest, match="'q' must be at most 256 characters"):
        account_query(q(q="x" * 257))


def test_a_plan_is_taken_exactly_as_given_and_repeated_for_several() -> None:
    """The contract takes a plan "Pro, annual": `plan=Pro, annual` asked for the plans "Pro" and
    "annual" instead, so that plan could not be filtered on."""
    assert account_query(q(plan="Pro, annual")).plans == ("Pro, annual",)
    assert account_query(q(plan=" Pro ")).plans == (" Pro ",)
    assert account_query(MultiDict([("plan", "Pro, annual"), ("plan", "team")])).plans == (
        "Pro, annual",
        "team",
    )
    with pytest.raises(BadRequest, match="'plan' is empty"):
        account_query(q(plan="  "))
    with pytest.raises(BadRequest, match="'q' is empty"):
        account_query(q(q="  "))
    assert account_query(q(format="csv")).limit == 100_000
    with pytest.raises(BadRequest, match="'limit' must be between 1 and 500"):
        account_query(q(limit="501"))


@pytest.mark.parametrize("spelled", ["csv", "csv ", " csv", "\tcsv\n"])
def test_the_answer_is_csv_whenever_the_limit_is_an_exports(spelled: str) -> None:
    """One reading of `format` (trimmed, as every parameter): a "csv " lifted the 500-row cap of
    a JSON page (the export's limit) while the answer stayed JSON."""
    assert account_query(q(format=spelled)).limit == alert_query(q(format=spelled)).limit == 100_000
    assert wants_csv(q(format=spelled))
    assert not wants_csv(q(format=" json ")) and not wants_csv(q())
    assert account_query(q(format=" json ")).limit == 50


def test_history_and_timeline_parameters() -> None:
    assert history_query(q()) == 400 and history_query(q(days="30")) == 30
    with pytest.raises(BadRequest, match="'days' must be between 1 and 400, got 401"):
        history_query(q(days="401"))
    assert timeline_query(q()) == 10 and timeline_query(q(per_kind="3")) == 3
    with pytest.raises(BadRequest, match="unknown query parameter 'days'"):
        timeline_query(q(days="3"))


def test_routes_without_parameters_refuse_any() -> None:
    with pytest.raises(BadRequest, match="unknown query parameter 'x'; expected: none"):
        no_params(q(x="1"))
