"""The scoring configuration: weights, curves, thresholds, segments, alert rules, currency.

Every field has a documented default, so an empty file is a valid configuration. A bad value is
refused when loaded (see `streamer.settings.load_score_config`) with the path of the offending key.
"""

from __future__ import annotations

import difflib
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from itertools import pairwise
from typing import Annotated, Literal, Self, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from streamer.contract.messages import plain_message
from streamer.contract.vocabulary import LifecycleStage
from streamer.core.bands import BandRule
from streamer.core.clock import HOUR
from streamer.core.curves import PiecewiseLinear
from streamer.core.peers import PEER_SIGNALS
from streamer.suggest import did_you_mean

COMPONENTS = ("adoption", "support", "sentiment", "financial")
M = TypeVar("M", bound=BaseModel)

# Bounds on what a file may say. A value past them is a typo or an attack: an infinite weight
# renormalised the score to NaN and a lateness of 1e300 days overflowed the state encoding.
MAX_WEIGHT = 1e6
MAX_DAYS = 3660  # ten years
MAX_COUNT = 10**9
MAX_LOG_ODDS = 1e6  # per unit of a model's input: far beyond any fitted coefficient
MAX_RATE = Decimal(10**9)  # units of the reporting currency per unit of another

# Numbers and switches as the file types them: a quoted "0.5" or a `true` where a number belongs
# is refused, not read as 0.5 or 1.0 (pydantic's strict mode for scalars; an int is a float).
Float = Annotated[float, pydantic.Strict()]
Int = Annotated[int, pydantic.Strict()]
Bool = Annotated[bool, pydantic.Strict()]
Weight = Annotated[Float, Field(ge=0, le=MAX_WEIGHT)]
Days = Annotated[Float, Field(ge=0, le=MAX_DAYS)]
LogOdds = Annotated[Float, Field(ge=-MAX_LOG_ODDS, le=MAX_LOG_ODDS)]


class Strict(BaseModel):
    # validate_default: a float field with an int default (`green = 70`) holds 70.0, as a
    # user's value would. Left an int, the pure-Python core published a score of 70 where the
    # compiled core (which keeps floats as C doubles) published 70.0.
    # allow_inf_nan=False: inf passed `ge=0` (an infinite weight made every score NaN).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class Curve(Strict):
    """A piecewise-linear map from a signal's value to 0-100, flat beyond its end points."""

    points: tuple[tuple[Float, Float], ...]

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: object) -> object:
        """Accept the plain `[[x, score], ...]` form used in the config file."""
        return {"points": data} if isinstance(data, list | tuple) else data

    @field_validator("points")
    @classmethod
    def _well_formed(cls, points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if len(points) < 2:
            raise ValueError("a curve needs at least two [x, score] points")
        xs = [x for x, _ in points]
        if any(b <= a for a, b in pairwise(xs)):
            raise ValueError(f"curve x values must strictly increase, got {xs}")
        bad = [y for _, y in points if not 0 <= y <= 100]
        if bad:
            raise ValueError(f"curve scores must be within 0..100, got {bad}")
        return points

    def __call__(self, x: float) -> float:
        return self.piecewise.at(x)

    @cached_property
    def piecewise(self) -> PiecewiseLinear:
        """The curve as the core evaluates it (compiled: it runs for every signal of every
        evaluation)."""
        return PiecewiseLinear(self.points)


def curve(*points: tuple[float, float]) -> Curve:
    return Curve(points=points)


class Curves(Strict):
    """Signal value -> 0-100. x units: ratios as fractions, counts, days or hours as named."""

    stickiness: Curve = curve((0, 0), (0.05, 30), (0.15, 70), (0.3, 100))
    seat_utilisation: Curve = curve((0, 0), (0.25, 40), (0.6, 80), (0.9, 100))
    feature_breadth: Curve = curve((0, 0), (0.2, 40), (0.5, 80), (0.75, 100))
    usage_trend: Curve = curve((-1, 0), (-0.5, 25), (-0.2, 60), (0, 80), (0.2, 100))
    recency_days: Curve = curve((0, 100), (3, 90), (7, 60), (14, 20), (30, 0))
    open_high_priority: Curve = curve((0, 100), (1, 70), (2, 45), (4, 10))
    oldest_open_hours: Curve = curve((0, 100), (24, 85), (72, 50), (168, 20), (336, 0))
    resolution_hours: Curve = curve((0, 100), (8, 95), (24, 80), (72, 50), (168, 20))
    first_contact_rate: Curve = curve((0, 30), (0.5, 70), (0.8, 100))
    ticket_volume_ratio: Curve = curve((0, 100), (1, 85), (2, 50), (4, 10))
    nps: Curve = curve((-100, 0), (-50, 15), (0, 50), (30, 75), (70, 100))
    csat_pct: Curve = curve((0, 0), (50, 30), (80, 80), (100, 100))
    ces: Curve = curve((1, 0), (4, 50), (6, 90), (7, 100))
    mrr_trend: Curve = curve((-1, 0), (-0.3, 30), (0, 75), (0.2, 100))
    payment_failures: Curve = curve((0, 100), (1, 55), (2, 25), (3, 0))
    # Days until the contract can end (any account with a known term end): flat at 100 beyond 90.
    # Flat over the first month: a month-to-month account scores 0 all month (not a saw-tooth
    # from 40 to 0 and back at every renewal, which raised band and score alerts on schedule).
    days_to_renewal: Curve = curve((0, 0), (31, 0), (90, 100))
    # Volume signals: by default scored as a percentile among peers ([peers]); these curves
    # serve `mode = "curve"`.
    events_28d: Curve = curve((0, 0), (10, 20), (100, 50), (1000, 80), (5000, 100))
    active_days_28d: Curve = curve((0, 0), (4, 30), (12, 70), (20, 100))
    user_days_28d: Curve = curve((0, 0), (10, 30), (50, 70), (200, 100))
    events_per_seat_28d: Curve = curve((0, 0), (5, 30), (30, 70), (100, 100))
    events_per_user_day_28d: Curve = curve((0, 0), (2, 40), (10, 80), (30, 100))
    events_trend_28d: Curve = curve((-1, 0), (-0.5, 25), (-0.2, 60), (0, 80), (0.2, 100))


class SignalWeights(Strict):
    """How much each signal counts inside its component (renormalised over present signals).

    Adoption leans on the volume of use, as the composite `usage_28d` (the volume signals ranked
    among peers, see [peers.composite]); the volume signals themselves are features (0: in the
    snapshot and open to `backtest --tune`, not counted twice). The ratio signals (stickiness,
    seat utilisation, feature breadth) ranked churners near chance on portfolios they were not
    written for and diluted the volume: they keep a small weight.
    """

    stickiness: Weight = 0.0  # ~chance on the ChurnSim portfolios (docs/backtest-rounds.md)
    seat_utilisation: Weight = 0.5
    feature_breadth: Weight = 0.5
    usage_trend: Weight = 0.0  # anti-predictive on a measured portfolio (see the README)
    recency_days: Weight = 1.0
    open_high_priority: Weight = 1.5
    oldest_open_hours: Weight = 1.0
    resolution_hours: Weight = 1.0
    first_contact_rate: Weight = 0.5
    ticket_volume_ratio: Weight = 1.0
    nps: Weight = 1.5
    csat_pct: Weight = 1.0
    ces: Weight = 0.5
    mrr_trend: Weight = 0.0  # flat MRR scored 75: penalised mature accounts (see the README)
    payment_failures: Weight = 1.5
    scheduled_cancellation: Weight = 4.0
    days_to_renewal: Weight = 4.0  # churn comes at a term end (docs/backtest-rounds.md)
    events_28d: Weight = 0.0  # in usage_28d
    active_days_28d: Weight = 0.0  # in usage_28d
    user_days_28d: Weight = 0.0  # in usage_28d
    events_per_seat_28d: Weight = 0.0  # in usage_28d
    events_per_user_day_28d: Weight = 0.0  # in usage_28d
    events_trend_28d: Weight = 0.0  # anti-predictive on a measured portfolio (see the README)
    feature_mix_28d: Weight = 0.0  # in usage_28d
    usage_28d: Weight = 4.0  # the volume signals' composite, ranked among peers ([peers.composite])

    @model_validator(mode="after")
    def _not_all_zero(self) -> Self:
        # With every signal at 0 no component has data: every account would score the same.
        if not any(getattr(self, name) > 0 for name in type(self).model_fields):
            raise ValueError("at least one signal weight must be above 0")
        return self


class ComponentWeights(Strict):
    """Weights of the four components; renormalised over the components that have data."""

    adoption: Weight = 0.35
    support: Weight = 0.20
    sentiment: Weight = 0.20
    financial: Weight = 0.35

    @model_validator(mode="after")
    def _not_all_zero(self) -> Self:
        if sum(self.as_dict().values()) <= 0:
            raise ValueError("at least one component weight must be above 0")
        return self

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in COMPONENTS}


class Bands(Strict):
    """Score thresholds: green >= green, yellow >= yellow, red below; and usage among peers.

    An account whose overall use (`usage_28d`, the volume composite ranked among its peers) is
    below the `red_usage_below` percentile is red, below `yellow_usage_below` at best yellow,
    whatever its score: a mean of many sub-scores rarely reaches the red score range on a
    portfolio where only usage moves, and the bottom tenth of use is where churn concentrates
    (0 turns either off).

    Green means "safe for now", and at most `green_share` percent of the paying accounts are
    green through their use: the committed ones (term beyond the renewal window) come first,
    as none of them can leave before it; an account that can leave soon is green only when its
    use ranks in the top `green_share` percent of its peers less the percent of the partition's
    paying accounts that are committed (so none where a fifth or more of them are committed).
    The budget is the partition's, not the plan's: with `peers.group_by = "plan"` it was
    counted per plan, and a monthly plan with no committed member got a fifth of its accounts
    green on top of the annual plans' committed ones (with "all", the default, the two agree).
    Off with 0, and before a partition's first peer reference: the score alone.

    The amount and the mix of use also count on their own, not only through the composite: an
    account that can leave soon is green only when each signal of `green_also` (its events and
    its mix of features by default) is in that top too, and red when one of `red_also` (the mix)
    is below `red_usage_below` (docs/backtest-rounds.md, "Bands: the amount and the mix on their own").
    Empty tuples turn either off.

    An account that has said it is leaving is red (`red_when_leaving`): a paying account whose
    cancellation is scheduled to take effect within `lifecycle.renewal_window_days`, however
    healthy its use (on `streamer simulate`, 92% of the accounts that scheduled one churned).
    """

    green: Annotated[Float, Field(ge=0, le=100)] = 70
    yellow: Annotated[Float, Field(ge=0, le=100)] = 40
    red_usage_below: Annotated[Float, Field(ge=0, le=100)] = 10
    yellow_usage_below: Annotated[Float, Field(ge=0, le=100)] = 25
    green_share: Annotated[Float, Field(ge=0, le=100)] = 20  # a fifth (docs/backtest-rounds.md, item 5)
    # peer signals whose own standing must also clear the green cut / may alone make red
    green_also: tuple[str, ...] = ("events_28d", "feature_mix_28d")
    red_also: tuple[str, ...] = ("feature_mix_28d",)
    # a paying account whose cancellation takes effect within lifecycle.renewal_window_days is red
    red_when_leaving: Bool = True

    @field_validator("green_also", "red_also")
    @classmethod
    def _peer_signals(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(names) - set(PEER_SIGNALS))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} not a peer signal; choose among {', '.join(PEER_SIGNALS)}"
            )
        return names

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        problem = self.disorder()
        if problem is not None:
            raise ValueError(problem)
        return self

    def disorder(self) -> str | None:
        """Why these thresholds are out of order, or None."""
        if self.yellow > self.green:
            return f"bands.yellow ({self.yellow}) must not exceed bands.green ({self.green})"
        if self.red_usage_below > self.yellow_usage_below:
            return (
                f"bands.red_usage_below ({self.red_usage_below}) must not exceed "
                f"bands.yellow_usage_below ({self.yellow_usage_below})"
            )
        return None

    @cached_property
    def rule(self) -> BandRule:
        """These thresholds as the band rule (`streamer.core.bands`, compiled with the core)."""
        return BandRule(
            self.green,
            self.yellow,
            self.red_usage_below,
            self.yellow_usage_below,
            self.green_share,
            self.green_also,
            self.red_also,
            self.red_when_leaving,
        )


class BandsOverride(Bands):
    """`[segments.X.bands]` / `[plans.X.bands]`: only the fields the file sets count, laid over
    the base `[bands]`; their order is checked once laid over (`ScoreConfig.bands_for`)."""

    def disorder(self) -> str | None:
        return None


class Segment(Strict):
    """Overrides for a lifecycle stage or a plan: the fields set replace the base values (the
    plan's over the stage's), unset fields keep them."""

    weights: ComponentWeights | None = None
    bands: BandsOverride | None = None

    @field_validator("bands", mode="before")
    @classmethod
    def _as_override(cls, value: object) -> object:
        """A `Bands` given in code overrides the fields it was given, like a file's table."""
        if isinstance(value, Bands) and not isinstance(value, BandsOverride):
            return {name: getattr(value, name) for name in value.model_fields_set}
        return value


def overlaid(base: M, overrides: tuple[BaseModel | None, ...], as_type: type[M]) -> M:
    """`base` with the fields each override set explicitly (a later override wins), validated
    again as `as_type`."""
    values = {name: getattr(base, name) for name in type(base).model_fields}
    for override in overrides:
        if override is not None:
            values.update({name: getattr(override, name) for name in override.model_fields_set})
    return as_type.model_validate(values)


class Features(Strict):
    """The product's feature catalogue; breadth is a fraction of it when it is given."""

    catalogue: tuple[str, ...] = ()
    key_features: tuple[str, ...] = ()
    default_breadth: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 8  # breadth denominator without a catalogue

    @field_validator("catalogue", "key_features")
    @classmethod
    def _each_once(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        """A feature named twice would count twice in the breadth's denominator."""
        counted = Counter(names)  # `names.count` per name: 100,000 names took 100 s
        twice = sorted(name for name, count in counted.items() if count > 1)
        if twice:
            raise ValueError(f"names {', '.join(map(repr, twice))} more than once; list each feature once")
        return names

    @field_validator("key_features")
    @classmethod
    def _in_catalogue(cls, names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """With a catalogue, a key feature outside it is a typo: nobody used it, and the
        key-feature signal read nothing."""
        catalogue = info.data.get("catalogue") or ()
        for name in names if catalogue else ():
            if name not in catalogue:
                raise ValueError(f"{name!r} is not in the catalogue{did_you_mean(name, catalogue)}")
        return names


class PeerSignal(Strict):
    """How one signal becomes 0-100: its percentile among peers, or its curve in [curves]."""

    mode: Literal["peer", "curve"] = "peer"
    higher_is_healthier: Bool = True


def _peer_defaults() -> dict[str, PeerSignal]:
    return {name: PeerSignal() for name in PEER_SIGNALS}


def _composite_defaults() -> dict[str, float]:
    return {
        "events_28d": 1.0,
        "active_days_28d": 1.0,
        "user_days_28d": 1.0,
        # The mix of use weighs as much as the three volume figures together: on socialnet7,
        # where usage is all there is, it ranked churn above the count (docs/backtest-rounds.md).
        "feature_mix_28d": 3.0,
    }


class Peers(Strict):
    """Peer-relative scoring: who an account is compared with, and which signals are compared.

    The peers of an account are all paying accounts of its partition (`group_by = "all"`, the
    default), or those on the same plan (`"plan"`) or in the same segment of their profiles
    (`"segment"`, from `account.updated`), when that group has at least `min_peers`, else all,
    as of the latest reference (rebuilt every midnight by default, `refresh_days`; see
    `streamer.core.peers`). All is the default:
    ranked within its plan, a small account on a big plan looked like a big one on a small plan,
    and the size of use, which ranks churn, was lost (docs/backtest-rounds.md).
    """

    group_by: Literal["plan", "segment", "all"] = "all"
    min_peers: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 20
    # The reference is rebuilt at the midnights of a grid of this many days, anchored on a Monday
    # (1: every midnight; 7: the first midnight of each ISO week). Between grid points an idle
    # account's standing among its peers stands still. Weekly takes 16-17% off the CPU of a wide
    # usage-light portfolio but cost 0.004 of AUC on both ChurnSim portfolios measured and raised
    # 7% more alerts (docs/backtest-rounds.md), so daily stays the default.
    refresh_days: Annotated[Int, Field(ge=1, le=28)] = 1
    signals: dict[str, PeerSignal] = Field(default_factory=_peer_defaults)
    # Weights of the volume signals' percentiles in the composite `usage_28d` (ranked again
    # among peers); a signal in curve mode does not count. Empty: no composite.
    composite: dict[str, Weight] = Field(default_factory=_composite_defaults)

    @field_validator("composite")
    @classmethod
    def _composite_known(cls, composite: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(composite) - set(PEER_SIGNALS))
        if unknown:
            raise ValueError(
                f"peers.composite names {', '.join(unknown)}, which are not peer signals; "
                f"choose among {', '.join(PEER_SIGNALS)}"
            )
        return composite

    @field_validator("signals")
    @classmethod
    def _known(cls, signals: dict[str, PeerSignal]) -> dict[str, PeerSignal]:
        unknown = sorted(set(signals) - set(PEER_SIGNALS))
        if unknown:
            raise ValueError(
                f"no peer value is computed for {', '.join(unknown)}; "
                f"peer signals are {', '.join(PEER_SIGNALS)}"
            )
        return {**_peer_defaults(), **signals}

    @cached_property
    def compared(self) -> dict[str, bool]:
        """Signal -> higher is healthier, for the signals in peer mode."""
        return {name: s.higher_is_healthier for name, s in self.signals.items() if s.mode == "peer"}

    @cached_property
    def composite_weights(self) -> dict[str, float]:
        """The composite's weights of the signals in peer mode (others do not count)."""
        compared = self.compared
        return {name: w for name, w in sorted(self.composite.items()) if name in compared and w > 0}


class Lifecycle(Strict):
    onboarding_days: Annotated[Int, Field(ge=0, le=MAX_DAYS)] = 90
    renewal_window_days: Annotated[Int, Field(ge=0, le=MAX_DAYS)] = 90


class Rule(Strict):
    enabled: Bool = True
    cooldown_days: Days = 7


class Rules(Strict):
    """Alert rules; thresholds next to the rule they belong to."""

    band_worsened: Rule = Rule(cooldown_days=3)
    band_recovered: Rule = Rule(cooldown_days=7)
    band_min_change_points: Annotated[Float, Field(ge=0, le=100)] = 2  # score move a band alert needs
    # Days (event time) a band change must hold before it is acknowledged and alerts (0: at once)
    band_confirm_days: Annotated[Float, Field(ge=0, le=60)] = 2
    # Days (event time) after the first product use of an account that was a customer for at
    # least as long, in which band changes are acknowledged without an alert: its product
    # analytics was connected late and its usage windows are filling (0: never)
    band_settle_days: Annotated[Float, Field(ge=0, le=90)] = 28
    # An account held in yellow by the green budget (healthy by score and use) that declined;
    # at most once a month, like renewal_at_risk: such accounts sway around the line with their
    # peers' percentiles (7 days let one account raise it 23 times on crm6-s404)
    health_declined: Rule = Rule(cooldown_days=30)
    score_drop: Rule = Rule(cooldown_days=7)
    score_drop_points: Annotated[Float, Field(gt=0, le=100)] = 15
    score_drop_window_days: Annotated[Int, Field(ge=1, le=30)] = 7
    # Off by default: on simulated portfolios no trend/baseline threshold made its precision
    # clearly better than the base churn rate (docs/backtest.md); these are the best found.
    usage_drop: Rule = Rule(enabled=False, cooldown_days=14)
    usage_drop_trend: Annotated[Float, Field(lt=0, ge=-1)] = -0.75
    usage_drop_critical_trend: Annotated[Float, Field(lt=0, ge=-1)] = -0.9
    usage_drop_min_weekly_baseline: Annotated[Float, Field(ge=0, le=MAX_COUNT)] = 1
    silence: Rule = Rule(cooldown_days=14)
    silence_days: Annotated[Float, Field(gt=0, le=MAX_DAYS)] = 14.0
    scheduled_cancellation: Rule = Rule(cooldown_days=0)
    payment_failed: Rule = Rule(cooldown_days=3)
    mrr_contraction: Rule = Rule(cooldown_days=0)
    renewal_at_risk: Rule = Rule(cooldown_days=30)
    renewal_at_risk_days: Days = 60.0
    support_backlog: Rule = Rule(cooldown_days=3)
    support_urgent_open_hours: Annotated[Float, Field(gt=0, le=24 * MAX_DAYS)] = 72
    support_high_open_count: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 3
    nps_detractor: Rule = Rule(cooldown_days=0)
    nps_detractor_max: Annotated[Int, Field(ge=0, le=10)] = 6
    csat_low: Rule = Rule(cooldown_days=0)
    csat_low_max: Annotated[Int, Field(ge=1, le=5)] = 2

    def rule(self, name: str) -> Rule:
        """The settings (enabled, cooldown) of the alert rule `name`."""
        found = getattr(self, name, None) if name in type(self).model_fields else None
        if not isinstance(found, Rule):
            raise KeyError(f"{name!r} is not an alert rule of [alerts]")
        return found

    @model_validator(mode="after")
    def _critical_below_warning(self) -> Self:
        if self.usage_drop_critical_trend > self.usage_drop_trend:
            raise ValueError(
                f"alerts.usage_drop_critical_trend ({self.usage_drop_critical_trend}) must not be above "
                f"alerts.usage_drop_trend ({self.usage_drop_trend}): critical is the deeper drop"
            )
        return self


# The built-in rates are US dollars per unit: they hold only while USD is the reporting currency.
BUILT_IN_RATES_BASE = "USD"
BUILT_IN_RATES = {"EUR": Decimal("1.08"), "GBP": Decimal("1.27")}


class Currency(Strict):
    reporting: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = BUILT_IN_RATES_BASE
    rates: dict[str, Decimal] = Field(
        default_factory=lambda: dict(BUILT_IN_RATES),
        description="Units of the reporting currency per one unit of each other currency",
    )

    @field_validator("rates")
    @classmethod
    def _positive(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in rates.items():
            if len(code) != 3 or not code.isupper():
                raise ValueError(f"currency code {code!r} must be three upper-case letters")
            if not rate > 0:
                raise ValueError(f"rate for {code} must be above 0, got {rate}")
            if not rate <= MAX_RATE:
                raise ValueError(f"rate for {code} must be at most {MAX_RATE}, got {rate}")
        return rates

    @model_validator(mode="after")
    def _rates_of_the_reporting_currency(self) -> Self:
        """Rates are per unit of the reporting currency. With `reporting = "EUR"` alone the
        built-in dollar rates were read as euro rates (a pound billed as 1.27 euros), their
        `EUR = 1.08` was ignored, and every dollar event was dead-lettered; a rate for the
        reporting currency itself is 1 by definition, so any other value is a mistake."""
        if self.reporting != BUILT_IN_RATES_BASE and "rates" not in self.model_fields_set:
            built_in = ", ".join(f"{code} = {rate}" for code, rate in BUILT_IN_RATES.items())
            raise ValueError(
                f"currency.reporting is {self.reporting!r} but no currency.rates are given, and the "
                f"built-in ones ({built_in}) are {BUILT_IN_RATES_BASE} per unit: add [currency.rates] "
                f"with the units of {self.reporting} per one unit of each other currency your events "
                f'use (such as {BUILT_IN_RATES_BASE} = "<{self.reporting} per {BUILT_IN_RATES_BASE}>")'
            )
        own = self.rates.get(self.reporting)
        if own is not None and own != 1:
            raise ValueError(
                f"currency.rates gives {self.reporting} = {own}, but {self.reporting} is the reporting "
                f"currency (currency.reporting), always 1: remove it, or give every rate per one "
                f"{self.reporting}"
            )
        return self

    def rate(self, code: str) -> Decimal | None:
        return Decimal(1) if code == self.reporting else self.rates.get(code)


class Time(Strict):
    allowed_lateness_days: Days = 7
    # Ticks re-score the accounts due at each multiple of this from the epoch: at least an hour
    # (a tiny interval once made the tick loop spin for hours, or divide by zero).
    rescore_interval_hours: Annotated[Float, Field(ge=1, le=24 * MAX_DAYS)] = 24
    # usage alone re-scores at most this often
    usage_rescore_minutes: Annotated[Float, Field(ge=0, le=24 * 60 * MAX_DAYS)] = 60
    # Idle accounts that are re-scored at every tick (30 days after their last event, or near a
    # renewal) are re-scored every this many days instead, and at the instants a silence alert or
    # the renewal window begins; None: at every tick (see README, "Idle accounts").
    idle_rescore_days: Annotated[Float, Field(ge=1, le=7)] | None = None
    portfolio_history_months: Annotated[Int, Field(ge=2, le=240)] = 36


class Portfolio(Strict):
    gross_margin: Annotated[Float, Field(gt=0, le=1)] = 1.0
    # a bound so that cost / retained accounts stays within Decimal's 28 digits (1e30 raised)
    cs_cost_per_month: Annotated[Decimal, Field(ge=0, le=10**17)] | None = None


class Limits(Strict):
    """Caps that bound memory per account whatever its history length."""

    max_users: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 2000
    max_features: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 256
    max_tickets: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 1000
    max_respondents: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 1000
    max_survey_answers: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 100
    max_comments: Annotated[Int, Field(ge=0, le=MAX_COUNT)] = 5
    max_subscription_points: Annotated[Int, Field(ge=4, le=MAX_COUNT)] = 400
    # Subscriptions of one account, ended ones included: an event for one more is dead-lettered
    # (there is no oldest to forget in its place). Counted apart, as many more it knows only
    # from renewals or cancellations, so made-up ids never block a real subscription.
    max_subscriptions: Annotated[Int, Field(ge=1, le=1000)] = 64
    # MRR steps of one account, all subscriptions together: past it the oldest are forgotten, as
    # past `max_subscription_points` within one. Every change re-derives the account's MRR
    # timeline from all its steps, so this bounds that cost (and the account's record).
    max_account_steps: Annotated[Int, Field(ge=4, le=100_000)] = 2_000
    # Dedupe ids remembered per account (16 bytes each): past this many within the allowed
    # lateness, the oldest are forgotten early (a producer's duplicate of one of them would then
    # count twice; re-reads after a restart are deduped by offset, not by id).
    max_remembered_ids: Annotated[Int, Field(ge=1000, le=MAX_COUNT)] = 250_000


class Input(Strict):
    """Bounds on input values: an event outside them is dead-lettered with the key to change.

    The contract (and its JSON Schema) has fixed outer limits; these are the sane ones a
    deployment may tighten or widen within them.
    """

    max_amount: Annotated[Decimal, Field(gt=0, le=Decimal("999999999999.999999"))] = Decimal(1_000_000_000)
    max_amount_places: Annotated[Int, Field(ge=0, le=6)] = 6  # decimal places of an amount
    max_seats: Annotated[Int, Field(ge=1, le=2**31 - 1)] = 10_000_000
    max_count: Annotated[Int, Field(ge=1, le=2**31 - 1)] = 1_000_000  # usage count of one event
    max_interval_count: Annotated[Int, Field(ge=1, le=2**31 - 1)] = 120
    max_attempt: Annotated[Int, Field(ge=1, le=2**31 - 1)] = 1_000  # payment attempts
    max_contacts: Annotated[Int, Field(ge=1, le=2**31 - 1)] = 100_000  # ticket contacts
    earliest: Annotated[datetime, Field(description="No event time (nor term end) before this")] = datetime(
        2000, 1, 1, tzinfo=UTC
    )
    max_skew_hours: Annotated[Float, Field(ge=0, le=24 * 366)] = 24  # occurred_at after publication
    max_term_years: Annotated[Float, Field(gt=0, le=100)] = 100  # term_end/effective_at after occurred_at
    # How far before its occurred_at a cancellation may take effect: further back it would rewrite
    # months the allowed lateness has closed (as an event that late is refused).
    max_backdate_days: Days = 7
    max_attributes: Annotated[Int, Field(ge=0, le=64)] = 32  # account.updated attributes
    max_attribute_length: Annotated[Int, Field(ge=1, le=1000)] = 256  # characters of an attribute value
    max_override_days: Annotated[Float, Field(gt=0, le=MAX_DAYS)] = 366  # expires_at after occurred_at

    @cached_property
    def earliest_ms(self) -> int:
        """`earliest` as epoch milliseconds (checked for every event)."""
        return int(self.earliest.timestamp() * 1000)

    def latest_ms(self, published_ms: int) -> int:
        """The latest event time accepted in a message published at `published_ms` (epoch ms):
        `max_skew_hours` after it."""
        return published_ms + int(self.max_skew_hours * HOUR)

    @field_validator("earliest")
    @classmethod
    def _aware(cls, earliest: datetime) -> datetime:
        if earliest.tzinfo is None:
            raise ValueError("input.earliest needs an offset, e.g. 2000-01-01T00:00:00Z")
        # The instant 1970-01-01T00:00:00Z closes the day before the first one the rolling windows
        # count (`clock.bucket_of`): events there were accepted and their use and tickets lost.
        if not datetime(1970, 1, 1, tzinfo=UTC) < earliest <= datetime(9000, 1, 1, tzinfo=UTC):
            raise ValueError(
                "input.earliest must be after 1970-01-01T00:00:00Z and at most 9000-01-01, "
                f"got {earliest.isoformat()}"
            )
        return earliest


class RiskModel(Strict):
    """A fitted churn model (`streamer backtest --tune` writes it): P(churn within `horizon_days`).

    log-odds = intercept + sum over signals of coefficient x sub-score / 100, where a signal
    without data takes its training mean (`means`) and adds its `missing` coefficient, + sum over
    `feature_volumes` of coefficient x ln(1 + events of that feature over 28 days), + `score` x
    the health score / 100 (the computed score, also when a person's override is published).
    Coefficients may have either sign (a plain logistic regression may be the model `--tune`
    chose); a model of `score` alone is the score calibrated, which `--tune` writes when the
    history has too few churned accounts to learn from.
    """

    version: Annotated[str, Field(min_length=1)]
    horizon_days: Literal[60] = 60  # published as churn_risk_60d
    intercept: LogOdds
    coefficients: dict[str, LogOdds] = Field(description="Per signal: log-odds per sub-score / 100")
    means: dict[str, Annotated[Float, Field(ge=0, le=100)]] = Field(
        description="Per signal: the training mean sub-score, used when the signal has no data"
    )
    missing: dict[str, LogOdds] = Field(default_factory=dict, description="Per signal: log-odds when absent")
    feature_volumes: dict[Annotated[str, Field(min_length=1)], LogOdds] = Field(
        default_factory=dict,
        description="Per product feature (event name): log-odds per unit of ln(1 + the account's events "
        "of that feature in the 28 days ending with the evaluation's day); 0 events when it has none",
    )
    score: LogOdds = Field(
        default=0.0, description="Log-odds per health score point / 100 (the computed score, 0-100)"
    )
    trained_from: str | None = None  # first and last training month start (YYYY-MM-DD)
    trained_to: str | None = None

    @model_validator(mode="after")
    def _known_signals(self) -> Self:
        """A misspelt signal would read as always missing: a constant term for every account."""
        known = tuple(SignalWeights.model_fields)
        for table, names in (
            ("coefficients", self.coefficients),
            ("means", self.means),
            ("missing", self.missing),
        ):
            for name in sorted(set(names) - set(known)):
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; signals are {', '.join(known)}"
                raise ValueError(f"model.{table} names {name!r}, which is not a signal{hint}")
        return self

    @model_validator(mode="after")
    def _means_for_every_signal(self) -> Self:
        lacking = sorted(set(self.coefficients) - set(self.means))
        if lacking:
            raise ValueError(
                f"model.means lacks {', '.join(lacking)}: every signal in model.coefficients needs "
                "the mean sub-score that stands in when it has no data"
            )
        return self


class ScoreConfig(Strict):
    """The whole scoring configuration (one TOML file)."""

    weights: ComponentWeights = ComponentWeights()
    signal_weights: SignalWeights = SignalWeights()
    curves: Curves = Curves()
    bands: Bands = Bands()
    empty_score: Annotated[Float, Field(ge=0, le=100)] = 50
    segments: dict[LifecycleStage, Segment] = Field(default_factory=dict)
    plans: dict[str, Segment] = Field(default_factory=dict)
    features: Features = Features()
    peers: Peers = Peers()
    lifecycle: Lifecycle = Lifecycle()
    alerts: Rules = Rules()
    currency: Currency = Currency()
    time: Time = Time()
    portfolio: Portfolio = Portfolio()
    limits: Limits = Limits()
    input: Input = Input()
    model: RiskModel | None = None  # a fitted churn model: snapshots then carry churn_risk_60d

    @cached_property
    def signal_table(self) -> dict[str, tuple[PiecewiseLinear | None, float]]:
        """Signal -> (curve to 0-100, None for a signal already 0-100; weight inside its
        component), looked up per evaluation (`streamer.core.curves.sub_score`)."""
        table: dict[str, tuple[PiecewiseLinear | None, float]] = {}
        for name in SignalWeights.model_fields:
            curve = getattr(self.curves, name, None)
            table[name] = (curve.piecewise if curve is not None else None, getattr(self.signal_weights, name))
        return table

    @cached_property
    def inert_signals(self) -> frozenset[str]:
        """Signals of weight 0 (computed and published as features, never scored or reasons)."""
        return frozenset(name for name, (_, weight) in self.signal_table.items() if weight == 0)

    @cached_property
    def segment_memo(self) -> dict[tuple[str, str | None], tuple[dict[str, float], Bands]]:
        """`segment`'s answers so far, by (stage, plan): the compiled core reads them without
        calling into this (interpreted) class."""
        return {}

    def segment(self, stage: str, plan: str | None) -> tuple[dict[str, float], Bands]:
        """(component weights, band thresholds) for a lifecycle stage and plan."""
        key = (stage, plan)
        found = self.segment_memo.get(key)
        if found is None:
            found = self.segment_memo[key] = (self.weights_for(stage, plan), self.bands_for(stage, plan))
        return found

    def _overrides(self, stage: str, plan: str | None) -> tuple[Segment | None, Segment | None]:
        return self.segments.get(stage), self.plans.get(plan or "")  # type: ignore[call-overload]

    def weights_for(self, stage: str, plan: str | None) -> dict[str, float]:
        """Component weights: the base, then the fields the stage's and then the plan's override set."""
        overrides = tuple(s.weights if s is not None else None for s in self._overrides(stage, plan))
        if overrides == (None, None):
            return self.weights.as_dict()
        return overlaid(self.weights, overrides, ComponentWeights).as_dict()

    def bands_for(self, stage: str, plan: str | None) -> Bands:
        """Band thresholds: the base, then the fields the stage's and then the plan's override set."""
        overrides = tuple(s.bands if s is not None else None for s in self._overrides(stage, plan))
        if overrides == (None, None):
            return self.bands
        return overlaid(self.bands, overrides, Bands)

    @model_validator(mode="after")
    def _overrides_combine(self) -> Self:
        """Every stage and plan's thresholds and weights, overrides laid over the base, are valid:
        a plan's `yellow` above the base `green` is refused when the file is loaded, not scored."""
        for stage in LifecycleStage:
            for plan in (None, *self.plans):
                given = [f"segments.{stage}"] if stage in self.segments else []
                if plan is not None:
                    given.append(f"plans.{plan}")
                if not given:
                    continue
                for table, combine in (("weights", self.weights_for), ("bands", self.bands_for)):
                    try:
                        combine(stage, plan)
                    except pydantic.ValidationError as error:
                        reason = plain_message(error.errors()[0])
                        layers = " and ".join(f"{name}.{table}" for name in given)
                        raise ValueError(f"{layers} laid over [{table}]: {reason}") from None
        return self
