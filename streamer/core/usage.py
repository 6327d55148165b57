"""Rolling product-usage windows per account in fixed-size day buckets.

Each user keeps the day they were last active plus a 64-day activity bit mask (packed in one
int: `last_day << HORIZON_DAYS | mask`), so distinct-user
counts (DAU per day, and WAU/MAU through a histogram of last-active days) update in O(1) per
event, in any arrival order within the bucket horizon. Each tracked feature also keeps its
events per day over the horizon (the mix of use, ranked among peers): at most `max_features` x
`HORIZON_DAYS` counters, in practice the features used times their active days. Memory is
bounded by `HORIZON_DAYS` and the user and feature caps, whatever the account's history length.

Layout (issue 11, resident bytes per account): a user is one int in `users` rather than an
object holding two, and a feature's day counters are one `array` of (day, count) pairs in the
order the days first appeared rather than a dict per feature (a dict and its entries cost about
three times the pairs' 16 bytes each on a usage-light account).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TypeAlias

from streamer.core.clock import bucket_of

HORIZON_DAYS = 64  # bucket horizon: covers MAU (30), trend (7 + 28) and the lateness allowance
_MASK = (1 << HORIZON_DAYS) - 1
PAIRS = "q"  # array type code of the per-feature (day, count) pairs: signed 64-bit
# A string alias: `array[int]` is for the type checker only before Python 3.12, and mypyc
# compiles a plain alias (not an `if TYPE_CHECKING` branch, whose `else` it drops).
Pairs: TypeAlias = "array[int]"


def pack_user(last_day: int, mask: int) -> int:
    """One user's activity as one int: the day last active above the 64-day bit mask (bit i
    set: active on day `last_day - i`). Negative days pack too (shifts are arithmetic)."""
    return last_day << HORIZON_DAYS | mask


def user_last_day(packed: int) -> int:
    return packed >> HORIZON_DAYS


def user_mask(packed: int) -> int:
    return packed & _MASK


@dataclass(slots=True, frozen=True)
class Windows:
    """Usage figures over the windows ending with one day."""

    dau: int
    wau: int
    mau: int
    average_daily_users_30: float
    activity_7: int
    activity_prev_28: int  # the 28 days before the last 7


@dataclass(slots=True, frozen=True)
class Volume:
    """How much the product was used over one window of whole days."""

    events: int  # sum of usage `count`
    active_days: int  # days with at least one event
    user_days: int  # sum over the days of the distinct users active that day


@dataclass(slots=True)
class Usage:
    users: dict[str, int] = field(default_factory=dict)  # user -> pack_user(last_day, mask)
    daily_users: dict[int, int] = field(default_factory=dict)  # day -> distinct active users
    last_day_users: dict[int, int] = field(default_factory=dict)  # day -> users last active then
    daily_activity: dict[int, int] = field(default_factory=dict)  # day -> sum of counts
    features: dict[str, int] = field(default_factory=dict)  # feature -> last day used
    # feature -> (day, count) pairs flat, days in first-seen order (see `feature_counts`)
    feature_days: dict[str, Pairs] = field(default_factory=dict)
    first_use: int | None = None
    first_key_use: int | None = None
    last_use: int | None = None
    horizon_day: int = 0  # buckets before this day have been dropped
    # Window sums over the days before `_memo_end`: [wau, mau, daily users 30d, activity 7d,
    # activity in the 28 days before those 7], kept exact as buckets before it change.
    _memo_end: int = -1
    _memo: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])

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
        self.daily_activity[day] = self.daily_activity.get(day, 0) + count
        end = self._memo_end
        if day < end:
            if day >= end - 6:
                self._memo[3] += count
            elif day >= end - 34:
                self._memo[4] += count
        self.first_use = at if self.first_use is None or at < self.first_use else self.first_use
        if self.last_use is None or at > self.last_use:
            self.last_use = at
        if key_feature and (self.first_key_use is None or at < self.first_key_use):
            self.first_key_use = at
        self._touch_user(user_id, day, max_users)
        last = self.features.get(feature)
        if last is None:
            if len(self.features) >= max_features:
                features = self.features
                for gone in sorted(features, key=lambda f: (features[f], f))[: max(1, len(features) // 8)]:
                    del features[gone]
                    self.feature_days.pop(gone, None)
            self.features[feature] = day
        elif day > last:
            self.features[feature] = day
        days = self.feature_days.get(feature)
        if days is None:
            self.feature_days[feature] = array(PAIRS, (day, count))
            return
        # In-order events land on the last pair: look from the end.
        for i in range(len(days) - 2, -1, -2):
            if days[i] == day:
                days[i + 1] += count
                return
        days.append(day)
        days.append(count)

    def feature_counts(self, feature: str) -> dict[int, int]:
        """Events per day of one feature (days in first-seen order; empty if not tracked)."""
        days = self.feature_days.get(feature)
        if days is None:
            return {}
        return {days[i]: days[i + 1] for i in range(0, len(days), 2)}

    def _touch_user(self, user_id: str, day: int, max_users: int) -> None:
        users = self.users
        packed = users.get(user_id)
        if packed is None:
            if len(users) >= max_users:
                self._evict_least_recent_users()
            users[user_id] = day << HORIZON_DAYS | 1
            self._bump(self.daily_users, day, 1)
            self._bump(self.last_day_users, day, 1)
            return
        last_day = packed >> HORIZON_DAYS
        mask = packed & _MASK
        if day > last_day:
            self._bump(self.last_day_users, last_day, -1)
            self._bump(self.last_day_users, day, 1)
            users[user_id] = day << HORIZON_DAYS | (((mask << (day - last_day)) | 1) & _MASK)
            self._bump(self.daily_users, day, 1)
            return
        offset = last_day - day
        if offset < HORIZON_DAYS and not mask >> offset & 1:
            users[user_id] = packed | 1 << offset
            self._bump(self.daily_users, day, 1)

    def _evict_least_recent_users(self) -> None:
        """Forget the least recently active eighth of the users at once (amortised O(log n))."""
        users = self.users
        gone = sorted(users, key=lambda uid: (users[uid] >> HORIZON_DAYS, uid))[: max(1, len(users) // 8)]
        for user_id in gone:
            self._bump(self.last_day_users, users.pop(user_id) >> HORIZON_DAYS, -1)

    def _bump(self, counts: dict[int, int], day: int, delta: int) -> None:
        end = self._memo_end
        if end - 29 <= day < end:
            if counts is self.daily_users:
                self._memo[2] += delta
            else:  # last_day_users
                self._memo[1] += delta
                if day >= end - 6:
                    self._memo[0] += delta
        value = counts.get(day, 0) + delta
        if value:
            counts[day] = value
        else:
            counts.pop(day, None)

    def expire(self, today: int) -> None:
        """Drop buckets older than the horizon (call when the day advances)."""
        horizon = today - HORIZON_DAYS + 1
        if horizon <= self.horizon_day:
            return
        self.horizon_day = horizon
        for counts in (self.daily_users, self.daily_activity):
            for day in [d for d in counts if d < horizon]:
                del counts[day]
        for feature in list(self.feature_days):
            days = self.feature_days[feature]
            if days and min(days[0::2]) >= horizon:
                continue
            kept = [item for i in range(0, len(days), 2) if days[i] >= horizon for item in days[i : i + 2]]
            if kept:
                self.feature_days[feature] = array(PAIRS, kept)
            else:
                del self.feature_days[feature]
        # Users silent for the whole horizon stay in the last-active histogram (they are
        # outside every window); drop them only when the account has too many (see record).

    # -- windows (ending with day `end`, inclusive) ------------------------------------------------

    def windows(self, end: int) -> Windows:
        """DAU/WAU/MAU, average DAU over 30 days and activity for the trend, ending with day `end`.

        Sums over the days before `end` are computed once per `end` and kept exact as events
        change those days; the day `end` itself (where in-order events land) is read live.
        """
        if self._memo_end != end:
            self._memo_end = end
            self._memo = [
                _sum(self.last_day_users, end - 6, end),
                _sum(self.last_day_users, end - 29, end),
                _sum(self.daily_users, end - 29, end),
                _sum(self.daily_activity, end - 6, end),
                _sum(self.daily_activity, end - 34, end - 6),
            ]
        past_wau, past_mau, past_daily, past_activity, prev28 = self._memo
        today_users = self.last_day_users.get(end, 0)
        return Windows(
            dau=today_users,
            wau=past_wau + today_users,
            mau=past_mau + today_users,
            average_daily_users_30=(past_daily + self.daily_users.get(end, 0)) / 30,
            activity_7=past_activity + self.daily_activity.get(end, 0),
            activity_prev_28=prev28,
        )

    def active_users(self, end: int, days: int) -> int:
        """Distinct users active in the `days` days ending with day `end` (DAU/WAU/MAU)."""
        # Users last active after `end` (out-of-order evaluation) are counted in no window.
        return _sum(self.last_day_users, end - days + 1, end + 1)

    def activity(self, end: int, days: int) -> int:
        return _sum(self.daily_activity, end - days + 1, end + 1)

    def volume(self, end: int, days: int) -> Volume:
        """Events, active days and active user-days in the `days` days ending with day `end`.

        Exact for any past window inside the horizon, whatever happened after it: each figure is
        a sum of per-day buckets (unlike distinct users, which the last-active histogram counts
        only for windows ending with the latest day).
        """
        start = end - days + 1
        counts = [count for day, count in self.daily_activity.items() if start <= day <= end]
        user_days = sum([users for day, users in self.daily_users.items() if start <= day <= end])
        return Volume(sum(counts), len(counts), user_days)

    def feature_volume(self, end: int, days: int) -> dict[str, int]:
        """Events per feature in the `days` days ending with day `end` (features with none left out)."""
        start = end - days + 1
        found: dict[str, int] = {}
        for feature, pairs in self.feature_days.items():
            total = 0
            for i in range(0, len(pairs), 2):
                if start <= pairs[i] <= end:
                    total += pairs[i + 1]
            if total:
                found[feature] = total
        return found

    def breadth(self, end: int, days: int = 30) -> int:
        start = end - days + 1
        return sum(1 for day in self.features.values() if day >= start)


def _sum(counts: dict[int, int], start: int, stop: int) -> int:
    """Sum of the buckets for days start <= day < stop."""
    if len(counts) < stop - start:
        return sum(value for day, value in counts.items() if start <= day < stop)
    get = counts.get
    return sum(get(day, 0) for day in range(start, stop))
