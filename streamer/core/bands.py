"""The band rule: green, yellow or red from a score, the use among peers and the contract.

Compiled with the core (it runs at every evaluation); its thresholds are the validated
`config.Bands`, whose docstring says what each one means.
"""

from __future__ import annotations

from streamer.contract.vocabulary import Band


class BandRule:
    """The thresholds of one `config.Bands`, and the decisions made with them."""

    def __init__(
        self,
        green: float,
        yellow: float,
        red_usage_below: float,
        yellow_usage_below: float,
        green_share: float,
        green_also: tuple[str, ...],
        red_also: tuple[str, ...],
        red_when_leaving: bool = True,
    ) -> None:
        self.green = green
        self.yellow = yellow
        self.red_usage_below = red_usage_below
        self.yellow_usage_below = yellow_usage_below
        self.green_share = green_share
        self.green_also = green_also
        self.red_also = red_also
        self.red_when_leaving = red_when_leaving

    def band(
        self,
        score: float,
        usage: float | None = None,
        committed: bool = False,
        committed_share: float = 0.0,
        standing: dict[str, float] | None = None,
        leaving: bool = False,
    ) -> Band:
        """The band of a score and, when known, of the usage composite's percentile among peers
        (`usage`), the percent of those peers that are committed (`committed_share`) and the
        account's percentile among them per peer signal, healthier higher (`standing`).

        Red means "likely to churn soon", which takes two things: a low score or the bottom of
        its peers' use (the composite, or one of `red_also` alone), and a contract that lets the
        account leave soon. A `committed` account (its term runs beyond the renewal window)
        cannot leave before then: it is at worst yellow, and low use alone does not lower its
        band (its score still carries it). Green means "safe for now": an account that can leave
        soon needs the top of its peers' use (the composite and each of `green_also`), what is
        left of `green_share` after the committed peers.

        An account `leaving` (a paying account whose cancellation is scheduled to take effect
        within the renewal window) is red whatever else it shows: it has said so.
        """
        if leaving and self.red_when_leaving:
            return Band.red
        if committed:
            return Band.green if score >= self.green else Band.yellow
        if score < self.yellow or (
            usage is not None and self.lowest_use(usage, standing) < self.red_usage_below
        ):
            return Band.red
        if score < self.green or (usage is not None and usage < self.yellow_usage_below):
            return Band.yellow
        if (
            usage is not None
            and self.green_share > 0
            and self.below_green_cut(self.top_use(usage, standing), committed_share)
        ):
            return Band.yellow  # can leave soon, and its use is not among its peers' very best
        return Band.green

    def lowest_use(self, usage: float, standing: dict[str, float] | None) -> float:
        """The composite's percentile, or a `red_also` signal's when lower (red reads it)."""
        return _lowest(usage, self.red_also, standing)

    def top_use(self, usage: float, standing: dict[str, float] | None) -> float:
        """The composite's percentile, or a `green_also` signal's when lower (green reads it)."""
        return _lowest(usage, self.green_also, standing)

    def green_cut(self, committed_share: float) -> float:
        """The usage percentile an account that can leave soon needs to be green: the top
        `green_share` percent of its peers less the percent of the paying accounts that are
        committed (100 when they are `green_share` percent or more: see `below_green_cut`)."""
        return 100.0 - max(0.0, self.green_share - committed_share)

    def below_green_cut(self, usage: float, committed_share: float) -> bool:
        """Whether an account that can leave soon misses the green budget: its use (`top_use`)
        is under `green_cut`, or the committed accounts took the whole budget. Then even the
        top of its peers' use (percentile 100, above every peer of the last reference) is not
        green: on crm6-s808 and crm6-s909 such accounts were 3 of green's 5 churners
        (docs/backtest-rounds.md, "Bands: a used-up budget means no green")."""
        return committed_share >= self.green_share or usage < self.green_cut(committed_share)

    def held_back(
        self,
        score: float,
        usage: float | None,
        committed: bool = False,
        committed_share: float = 0.0,
        standing: dict[str, float] | None = None,
    ) -> bool:
        """Whether `band` gives yellow only because committed accounts took the green budget:
        an account that can leave soon, healthy by its score and use (not red, composite at or
        above `yellow_usage_below`), whose use is not among the top of its peers', in a
        partition with committed accounts. The alerts watch it: a decline from there raises
        `health_declined`, the green -> yellow change that rule took away. Where no account is
        committed (a month-to-month portfolio) nothing is held: the declines of the accounts
        just below the top of use churned under the base rate there (docs/backtest-rounds.md)."""
        return (
            not committed
            and committed_share > 0
            and score >= self.green
            and usage is not None
            and usage >= self.yellow_usage_below
            and self.lowest_use(usage, standing) >= self.red_usage_below
            and self.green_share > 0
            and self.below_green_cut(self.top_use(usage, standing), committed_share)
        )


def _lowest(usage: float, names: tuple[str, ...], standing: dict[str, float] | None) -> float:
    """The lowest of `usage` and the `standing` of the signals `names` that have one."""
    lowest = usage
    if standing is not None:
        for name in names:
            found = standing.get(name)
            if found is not None and found < lowest:
                lowest = found
    return lowest
