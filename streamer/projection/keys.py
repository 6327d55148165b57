"""Names of the projection's Redis keys, all under one prefix (the app id), shared by writer and reader.

Layout (prefix `P`, e.g. `healthstream`):

    P:meta                      hash: currency, gross_margin, cs_cost_per_month (the workers' config)
    P:account:<id>              hash: as_of (epoch ms), snapshot (the cs.health JSON), layout
    P:summaries                 hash: <id> -> compact JSON row (score, band, stage, plan, MRR, renewal...)
    P:by:score|mrr|renewal|churn_risk   sorted sets over all accounts (renewal: only accounts with
                                a renewal date; churn_risk: only those with a churn_risk_60d)
    P:band:<band>:<index>       the same per band (green, yellow, red)
    P:by:risk                   sorted set: MRR of accounts not green (the MRR at risk)
    P:partition:<n>             hash: stream_time, sums (PeriodSums JSON), totals (JSON list)
    P:partitions                set of partition numbers written
    P:alerts                    sorted set: alert ids by raised_at (epoch ms), the newest kept
    P:alert                     hash: alert id -> alert JSON
    P:alert:owner               hash: alert id -> account id
    P:account-alerts:<id>       sorted set: one account's alert ids by raised_at, the newest kept
    P:history:<id>              sorted set: the account's history points by as_of (see history.py)
    P:owners | P:segments       hash: owner / segment -> number of accounts (from the snapshot's profile)
    P:owner:<owner>             set: the owner's account ids (P:segment:<segment> likewise)
    P:workers                   sorted set: worker ids by the wall time of their last report
    P:worker:<id>               string: the worker's stats JSON, with a TTL
    P:written:<writer>          string: how many writes a worker's projection writer completed, with
                                a TTL (a Redis that holds fewer went back to older data)
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.contract.vocabulary import BANDS

INDEXES = ("score", "mrr", "renewal", "churn_risk")  # the sorted sets an account list is read from
# The layout of what a snapshot writes (its row, indexes, sets): bump it with a change that adds to
# them, so that the upgraded workers' re-staging rewrites every account (scripts.SNAPSHOT) where it
# otherwise leaves the snapshot published at the same instant as it is.
LAYOUT = 1


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    def account(self, account_id: str) -> str:
        return f"{self.prefix}:account:{account_id}"

    @property
    def summaries(self) -> str:
        return f"{self.prefix}:summaries"

    def index(self, field: str, band: str | None = None) -> str:
        """Sorted set of account ids by `field` (one of INDEXES), optionally within a band."""
        if field not in INDEXES:
            raise ValueError(f"no index on {field!r}")
        return f"{self.prefix}:by:{field}" if band is None else f"{self.prefix}:band:{band}:{field}"

    @property
    def risk(self) -> str:
        return f"{self.prefix}:by:risk"

    def band_indexes(self) -> list[str]:
        """Every per-band index, band by band in BANDS order, fields in INDEXES order."""
        return [self.index(field, band) for band in BANDS for field in INDEXES]

    def partition(self, partition: int) -> str:
        return f"{self.prefix}:partition:{partition}"

    @property
    def partitions(self) -> str:
        return f"{self.prefix}:partitions"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def alert_data(self) -> str:
        return f"{self.prefix}:alert"

    @property
    def alert_owner(self) -> str:
        return f"{self.prefix}:alert:owner"

    @property
    def account_alerts_prefix(self) -> str:
        return f"{self.prefix}:account-alerts:"

    def account_alerts(self, account_id: str) -> str:
        return f"{self.account_alerts_prefix}{account_id}"

    def history(self, account_id: str) -> str:
        return f"{self.prefix}:history:{account_id}"

    @property
    def owners(self) -> str:
        return f"{self.prefix}:owners"

    @property
    def segments(self) -> str:
        return f"{self.prefix}:segments"

    @property
    def owner_prefix(self) -> str:
        return f"{self.prefix}:owner:"

    @property
    def segment_prefix(self) -> str:
        return f"{self.prefix}:segment:"

    def owner(self, owner: str) -> str:
        return f"{self.owner_prefix}{owner}"

    def segment(self, segment: str) -> str:
        return f"{self.segment_prefix}{segment}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def written(self, writer_id: str) -> str:
        return f"{self.prefix}:written:{writer_id}"
