"""Rolling product-usage windows per account in fixed-size day buckets.

Each user keeps the day they were last active plus a 64-day activity bit mask, so distinct-user
counts (DAU per day, and WAU/MAU through a histogram of last-active days) update in O(1) per
event, in any arrival order within the bucket horizon. Each tracked feature also keeps its
events per day over the horizon (the mix of use, ranked among peers): at most `max_features` x
`HORIZON_DAYS` counters, in practice the features used times their active days. Memory is
bounded by `HORIZON_DAYS` and the user and feature caps, whatever the account's history length.

Layout (issue 11, resident bytes per account): flat buffers, not dicts of int objects (a dict
entry with its int objects costs 60-130 bytes, a slot of an `array` 4-8). A user is an 8-byte
key (the first 8 bytes of the BLAKE2b digest of the user id, as the dedupe ids: see
`user_key`) in `user_keys`, with its last active day and its mask at the same index of
`user_last` and `user_masks`: 20 bytes. The day buckets are sorted `array`s of days with the
values at the same index (the per-day activity and distinct users share one array of days), so
a window's sum is a bisection and the sum of a slice. The features' day counters are one
`array` of (day, count) pairs, feature after feature, with one array of where each feature's
pairs end (one array for all: an `array` object costs 64 bytes before its items).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeAlias

from streamer.core.clock import bucket_of
from streamer.core.keys import KEY_BYTES, key_index, key_of

HORIZON_DAYS = 64  # bucket horizon: covers MAU (30), trend (7 + 28) and the lateness allowance
_MASK = (1 << HORIZON_DAYS) - 1
# Day numbers (days since 1970) and users per day or per last active day, signed 32-bit: a day
# gains at most one user per usage event (2^31 events of one account on one day would overflow).
DAYS = "i"
# Events per day (of the account, of a feature): 4 bytes each while every value of the array
# fits, 8 once one does not (`counts`; one event may count up to 2^31 - 1).
NARROW, WIDE = "i", "q"
_NARROW_MIN, _NARROW_MAX = -(1 << 31), (1 << 31) - 1
MASKS = "Q"  # a user's 64-day activity mask
# `array[int]` is for the type checker only before Python 3.12: a string alias for it, and at run
# time the class itself, so that `typing.get_type_hints` resolves the annotations. Not an `if
# TYPE_CHECKING: ... else: ...`: mypyc compiles the `else` into "Reached allegedly unreachable code!".
Pairs: TypeAlias = "array[int]"
globals()["Pairs"] = array


def counts(values: Iterable[int]) -> Pairs:
    """An array of counts: 4 bytes each while all fit in 32 bits, 8 otherwise."""
    found = list(values)
    if all(_NARROW_MIN <= value <= _NARROW_MAX for value in found):
        return array(NARROW, found)
    return array(WIDE, found)


def _fits(values: Pairs, value: int) -> bool:
    return values.typecode == WIDE or _NARROW_MIN <= value <= _NARROW_MAX


def user_key(user_id: str) -> bytes:
    """A user's key: the first 8 bytes of the BLAKE2b digest of the id.

    Two users of one account share a key with odds of about n^2 / 2^65 for n users (1 in 10^13
    at the default cap of 2,000): they would then count as one user.
    """
    return key_of(user_id)


@dataclass(slots=True, frozen=True, init=False)
class Windows:
    """Usage figures over the windows ending with one day."""

    dau: int
    wau: int
    mau: int
    average_daily_users_30: float
    activity_7: int
    activity_prev_28: int  # the 28 days before the last 7

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self,
        dau: int,
        wau: int,
        mau: int,
        average_daily_users_30: float,
        activity_7: int,
        activity_prev_28: int,
    ) -> None:
        object.__setattr__(self, "dau", dau)
        object.__setattr__(self, "wau", wau)
        object.__setattr__(self, "mau", mau)
        object.__setattr__(self, "average_daily_users_30", average_daily_users_30)
        object.__setattr__(self, "activity_7", activity_7)
        object.__setattr__(self, "activity_prev_28", activity_prev_28)


@dataclass(slots=True, frozen=True, init=False)
class Volume:
    """How much the product was used over one window of whole days."""

    events: int  # sum of usage `count`
    active_days: int  # days with at least one event
    user_days: int  # sum over the days of the distinct users active that day

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(self, events: int, active_days: int, user_days: int) -> None:
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "active_days", active_days)
        object.__setattr__(self, "user_days", user_days)


@dataclass(slots=True)
class Usage:
    # Users: key i is user_keys[8i:8i+8], active last on user_last[i], mask user_masks[i].
    user_keys: bytearray = field(default_factory=bytearray)
    user_last: Pairs = field(default_factory=lambda: array(DAYS))
    user_masks: Pairs = field(default_factory=lambda: array(MASKS))
    # Day buckets within the horizon, days ascending: events (sum of counts) and distinct users
    # active that day (0 when none was counted: a day with users always has events).
    bucket_days: Pairs = field(default_factory=lambda: array(DAYS))
    bucket_activity: Pairs = field(default_factory=lambda: array(NARROW))  # see `counts`
    bucket_users: Pairs = field(default_factory=lambda: array(DAYS))
    # The histogram of the users' last active days (no zero counts), days ascending; days before
    # the horizon stay while a user was last active then.
    last_days: Pairs = field(default_factory=lambda: array(DAYS))
    last_day_users: Pairs = field(default_factory=lambda: array(DAYS))
    features: dict[str, int] = field(default_factory=dict)  # feature -> last day used
    # The features with day counters, in the order they got them, and their (day, count) pairs
    # flat in one array, feature after feature (days ascending within a feature, so a window is
    # two bisections and the sum of a slice); feature f's pairs end at item `feature_ends[f]`.
    # 4 bytes each while they fit (see `counts`).
    feature_names: list[str] = field(default_factory=list)
    feature_pairs: Pairs = field(default_factory=lambda: array(NARROW))
    feature_ends: Pairs = field(default_factory=lambda: array(DAYS))
    first_use: int | None = None
    first_key_use: int | None = None
    last_use: int | None = None
    horizon_day: int = 0  # buckets before this day have been dropped
    # Window sums over the days before `_sums_end`: [wau, mau, daily users 30d, activity 7d,
    # activity in the 28 days before those 7], kept exact as buckets before it change.
    _sums_end: int = -1
    _sums: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])

    def record(
        self,
        at: int,
        user_id: str,
        feature: str,
        count: int,
        *,
        key_feature: bool,
        max_users: int,
        max_features: int,
    ) -> None:
        """Fold one usage event in (any order within the horizon)."""
        day = bucket_of(at)
        if day < self.horizon_day:
            return
        self._add_activity(day, count)
        end = self._sums_end
        if day < end:
            if day >= end - 6:
                self._sums[3] += count
            elif day >= end - 34:
                self._sums[4] += count
        self.first_use = at if self.first_use is None or at < self.first_use else self.first_use
        if self.last_use is None or at > self.last_use:
            self.last_use = at
        if key_feature and (self.first_key_use is None or at < self.first_key_use):
            self.first_key_use = at
        self._touch_user(user_key(user_id), day, max_users)
        last = self.features.get(feature)
        if last is None:
            if len(self.features) >= max_features:
                features = self.features
                for gone in sorted(features, key=lambda f: (features[f], f))[: max(1, len(features) // 8)]:
                    del features[gone]
                    self._drop_counters(gone)
            self.features[feature] = day
        elif day > last:
            self.features[feature] = day
        self._count_feature(feature, day, count)

    # -- per-feature day counters -----------------------------------------------------------------

    def _feature_index(self, feature: str) -> int:
        """The index of `feature` in `feature_names`, or -1."""
        try:
            return self.feature_names.index(feature)
        except ValueError:
            return -1

    def _feature_span(self, f: int) -> tuple[int, int]:
        """Where feature f's pairs are in `feature_pairs`: [start, stop)."""
        return (self.feature_ends[f - 1] if f else 0), self.feature_ends[f]

    def _widen_pairs(self) -> Pairs:
        """`feature_pairs` with 8 bytes an item (when a value needs them)."""
        pairs = self.feature_pairs = array(WIDE, self.feature_pairs)
        return pairs

    def add_feature_counts(self, feature: str, pairs: Iterable[int]) -> None:
        """Append the (day, count) pairs (flat) of a feature without counters yet (the codec's
        decoder; `record` for events)."""
        found = list(pairs)
        days = found[0::2]
        # A record written before days were kept ascending holds them in arrival order.
        if any(later < earlier for earlier, later in pairwise(days)):
            ordered = sorted(zip(days, found[1::2], strict=True))
            found = [item for pair in ordered for item in pair]
        into = self.feature_pairs
        if not all(_fits(into, value) for value in found):
            into = self._widen_pairs()
        into.extend(found)
        self.feature_names.append(feature)
        self.feature_ends.append(len(into))

    def _count_feature(self, feature: str, day: int, count: int) -> None:
        f = self._feature_index(feature)
        if f < 0:
            self.add_feature_counts(feature, (day, count))
            return
        start, stop = self._feature_span(f)
        pairs = self.feature_pairs
        # In-order events land on the feature's last pair: look from the end for the day, or
        # for where it goes (days ascending).
        at = start
        for i in range(stop - 2, start - 1, -2):
            if pairs[i] == day:
                value = pairs[i + 1] + count
                if not _fits(pairs, value):
                    pairs = self._widen_pairs()
                pairs[i + 1] = value
                return
            if pairs[i] < day:
                at = i + 2
                break
        if not (_fits(pairs, day) and _fits(pairs, count)):
            pairs = self._widen_pairs()
        pairs.insert(at, count)
        pairs.insert(at, day)
        ends = self.feature_ends
        for g in range(f, len(ends)):
            ends[g] += 2

    def _drop_counters(self, feature: str) -> None:
        f = self._feature_index(feature)
        if f < 0:
            return
        start, stop = self._feature_span(f)
        del self.feature_pairs[start:stop]
        del self.feature_names[f]
        ends = self.feature_ends
        del ends[f]
        for g in range(f, len(ends)):
            ends[g] -= stop - start

    # -- users ------------------------------------------------------------------------------------

    def user_count(self) -> int:
        """Users remembered (at most `max_users`)."""
        return len(self.user_last)

    def has_user(self, user_id: str) -> bool:
        return self._user_index(user_key(user_id)) >= 0

    def _user_index(self, key: bytes) -> int:
        """The index of the user with this key, or -1."""
        return key_index(self.user_keys, key)

    def add_user(self, key: bytes, last_day: int, mask: int) -> None:
        """Append a user not yet there (the codec's decoder; `record` for events)."""
        self.user_keys += key
        self.user_last.append(last_day)
        self.user_masks.append(mask)

    def _touch_user(self, key: bytes, day: int, max_users: int) -> None:
        i = self._user_index(key)
        if i < 0:
            if len(self.user_last) >= max_users:
                self._evict_least_recent_users()
            self.add_user(key, day, 1)
            self._bump_users(day)
            self._bump_last(day, 1)
            return
        last_day = self.user_last[i]
        mask = self.user_masks[i]
        if day > last_day:
            self._bump_last(last_day, -1)
            self._bump_last(day, 1)
            self.user_last[i] = day
            self.user_masks[i] = ((mask << (day - last_day)) | 1) & _MASK
            self._bump_users(day)
            return
        offset = last_day - day
        if offset < HORIZON_DAYS and not mask >> offset & 1:
            self.user_masks[i] = mask | 1 << offset
            self._bump_users(day)

    def _evict_least_recent_users(self) -> None:
        """Forget the least recently active eighth of the users at once (amortised O(log n)).

        Users last active on the same day go in the order of their keys (before state format 6,
        of their ids; the cap is 2,000 users by default, which no development portfolio reaches).
        """
        keys, last = self.user_keys, self.user_last
        n = len(last)
        order = sorted(range(n), key=lambda i: (last[i], keys[i * KEY_BYTES : (i + 1) * KEY_BYTES]))
        gone = set(order[: max(1, n // 8)])
        for i in sorted(gone):
            self._bump_last(last[i], -1)
        kept = [i for i in range(n) if i not in gone]
        self.user_keys = bytearray(b"".join(keys[i * KEY_BYTES : (i + 1) * KEY_BYTES] for i in kept))
        self.user_last = array(DAYS, [last[i] for i in kept])
        self.user_masks = array(MASKS, [self.user_masks[i] for i in kept])

    # -- day buckets ------------------------------------------------------------------------------

    def _add_activity(self, day: int, count: int) -> None:
        days = self.bucket_days
        n = len(days)
        if n and days[n - 1] == day:  # in-order events land on the last day
            i = n - 1
        else:
            i = n if not n or days[n - 1] < day else bisect_left(days, day)
            if i == n or days[i] != day:
                days.insert(i, day)
                self.bucket_users.insert(i, 0)
                self._activity(count).insert(i, count)
                return
        value = self.bucket_activity[i] + count
        self._activity(value)[i] = value

    def _activity(self, value: int) -> Pairs:
        """`bucket_activity`, widened first if `value` needs 8 bytes."""
        if not _fits(self.bucket_activity, value):
            self.bucket_activity = array(WIDE, self.bucket_activity)
        return self.bucket_activity

    def _bump_users(self, day: int) -> None:
        """One more distinct user active on `day` (whose bucket `record` made)."""
        end = self._sums_end
        if end - 29 <= day < end:
            self._sums[2] += 1
        days = self.bucket_days
        n = len(days)
        i = n - 1 if n and days[n - 1] == day else bisect_left(days, day)
        self.bucket_users[i] += 1

    def _bump_last(self, day: int, delta: int) -> None:
        end = self._sums_end
        if end - 29 <= day < end:
            self._sums[1] += delta
            if day >= end - 6:
                self._sums[0] += delta
        days, counts = self.last_days, self.last_day_users
        i = bisect_left(days, day)
        if i < len(days) and days[i] == day:
            value = counts[i] + delta
            if value:
                counts[i] = value
            else:
                del days[i]
                del counts[i]
        elif delta:
            days.insert(i, day)
            counts.insert(i, delta)

    def expire(self, today: int) -> None:
        """Drop buckets older than the horizon (call when the day advances)."""
        horizon = today - HORIZON_DAYS + 1
        if horizon <= self.horizon_day:
            return
        self.horizon_day = horizon
        gone = bisect_left(self.bucket_days, horizon)
        if gone:
            del self.bucket_days[:gone]
            del self.bucket_activity[:gone]
            del self.bucket_users[:gone]
        self._expire_feature_days(horizon)
        # Users silent for the whole horizon stay in the last-active histogram (they are
        # outside every window); drop them only when the account has too many (see record).

    def _expire_feature_days(self, horizon: int) -> None:
        """Drop the per-feature (day, count) pairs before `horizon`, and features left without
        any: compacted in place, pairs kept in their order (once a day per account)."""
        pairs, ends, names = self.feature_pairs, self.feature_ends, self.feature_names
        kept_names: list[str] = []
        kept_ends: list[int] = []
        written = start = 0
        for f in range(len(names)):
            stop = ends[f]
            before = written
            for i in range(start, stop, 2):
                day = pairs[i]
                if day >= horizon:
                    if written != i:
                        pairs[written] = day
                        pairs[written + 1] = pairs[i + 1]
                    written += 2
            start = stop
            if written > before:
                kept_names.append(names[f])
                kept_ends.append(written)
        if written == len(pairs):
            return  # nothing was before the horizon
        del pairs[written:]
        self.feature_names = kept_names
        self.feature_ends = array(DAYS, kept_ends)

    def feature_counts(self, feature: str) -> dict[int, int]:
        """Events per day of one feature (days ascending; empty if not tracked)."""
        f = self._feature_index(feature)
        if f < 0:
            return {}
        start, stop = self._feature_span(f)
        pairs = self.feature_pairs
        return {pairs[i]: pairs[i + 1] for i in range(start, stop, 2)}

    # -- windows (ending with day `end`, inclusive) ------------------------------------------------

    def windows(self, end: int) -> Windows:
        """DAU/WAU/MAU, average DAU over 30 days and activity for the trend, ending with day `end`.

        Sums over the days before `end` are computed once per `end` and kept exact as events
        change those days; the day `end` itself (where in-order events land) is read live.
        """
        if self._sums_end != end:
            self._sums_end = end
            self._sums = [
                _sum(self.last_days, self.last_day_users, end - 6, end),
                _sum(self.last_days, self.last_day_users, end - 29, end),
                _sum(self.bucket_days, self.bucket_users, end - 29, end),
                _sum(self.bucket_days, self.bucket_activity, end - 6, end),
                _sum(self.bucket_days, self.bucket_activity, end - 34, end - 6),
            ]
        past_wau, past_mau, past_daily, past_activity, prev28 = self._sums
        today_users = _at(self.last_days, self.last_day_users, end)
        days = self.bucket_days
        n = len(days)
        # The day `end` is usually the last bucket, or none yet.
        i = n - 1 if n and days[n - 1] == end else bisect_left(days, end)
        on_end = i < n and days[i] == end
        return Windows(
            dau=today_users,
            wau=past_wau + today_users,
            mau=past_mau + today_users,
            average_daily_users_30=(past_daily + (self.bucket_users[i] if on_end else 0)) / 30,
            activity_7=past_activity + (self.bucket_activity[i] if on_end else 0),
            activity_prev_28=prev28,
        )

    def active_users(self, end: int, days: int) -> int:
        """Distinct users active in the `days` days ending with day `end` (DAU/WAU/MAU)."""
        # Users last active after `end` (out-of-order evaluation) are counted in no window.
        return _sum(self.last_days, self.last_day_users, end - days + 1, end + 1)

    def activity(self, end: int, days: int) -> int:
        return _sum(self.bucket_days, self.bucket_activity, end - days + 1, end + 1)

    def volume(self, end: int, days: int) -> Volume:
        """Events, active days and active user-days in the `days` days ending with day `end`.

        Exact for any past window inside the horizon, whatever happened after it: each figure is
        a sum of per-day buckets (unlike distinct users, which the last-active histogram counts
        only for windows ending with the latest day).
        """
        bucket_days = self.bucket_days
        lo = bisect_left(bucket_days, end - days + 1)
        hi = bisect_left(bucket_days, end + 1)
        if lo == hi:
            return Volume(0, 0, 0)
        return Volume(sum(self.bucket_activity[lo:hi]), hi - lo, sum(self.bucket_users[lo:hi]))

    def feature_volume(self, end: int, days: int) -> dict[str, int]:
        """Events per feature in the `days` days ending with day `end` (features with none left out)."""
        start = end - days + 1
        found: dict[str, int] = {}
        pairs, ends = self.feature_pairs, self.feature_ends
        first = 0
        for f, feature in enumerate(self.feature_names):
            stop = ends[f]
            # Not `_sum`: it would copy the counts too (about 1 us more per evaluation, measured).
            feature_days = pairs[first:stop:2]
            lo = bisect_left(feature_days, start)
            hi = bisect_left(feature_days, end + 1, lo)
            if hi > lo:
                total = sum(pairs[first + 2 * lo + 1 : first + 2 * hi : 2])
                if total:
                    found[feature] = total
            first = stop
        return found

    def breadth(self, end: int, days: int = 30) -> int:
        start = end - days + 1
        return sum(1 for day in self.features.values() if day >= start)


def _sum(days: Pairs, values: Pairs, start: int, stop: int) -> int:
    """Sum of the values of the days start <= day < stop (`days` ascending)."""
    lo = bisect_left(days, start)
    hi = bisect_left(days, stop)
    return sum(values[lo:hi]) if hi > lo else 0


def _at(days: Pairs, values: Pairs, day: int) -> int:
    """The value of `day`, 0 if it has none (`days` ascending)."""
    i = bisect_left(days, day)
    return values[i] if i < len(days) and days[i] == day else 0
