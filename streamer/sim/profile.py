"""Who each simulated account is: a company name, its CSM (a small team), segment and tier.

Drawn from the account's own random stream (seed/index/profile), so adding profiles left every
other simulated event as it was.
"""

from __future__ import annotations

from random import Random
from typing import Any

from streamer.sim.catalog import PLAN_BY_NAME

CSMS = ("ana@example.com", "bo@example.com", "chen@example.com", "dara@example.com", "eli@example.com")
"""The CS team: each segment's accounts go to two or three of them."""
BOOKS = {
    "smb": CSMS[:3],
    "mid-market": CSMS[2:4],
    "enterprise": CSMS[3:],
}
SEGMENT_BY_TIER = ("smb", "smb", "mid-market", "enterprise")
FIRST = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Monarch",
    "Oscorp",
    "Pied Piper",
    "Dunder",
    "Nakatomi",
)
SECOND = (
    "Labs",
    "Systems",
    "Logistics",
    "Health",
    "Foods",
    "Capital",
    "Media",
    "Robotics",
    "Energy",
    "Retail",
)
REGION_BY_TZ = {"amer": range(-12, -2), "emea": range(-2, 5), "apac": range(5, 15)}


def profile_fields(seed: int, index: int, plan: str, tz_hours: int) -> dict[str, Any]:
    """The fields of the account's `account.updated`."""
    rng = Random(f"{seed}/{index}/profile")
    segment = SEGMENT_BY_TIER[PLAN_BY_NAME[plan].tier]
    region = next((name for name, hours in REGION_BY_TZ.items() if tz_hours in hours), "emea")
    return {
        "name": f"{rng.choice(FIRST)} {rng.choice(SECOND)} {index}",
        "owner": rng.choice(BOOKS[segment]),
        "segment": segment,
        "tier": "premium" if segment == "enterprise" or rng.random() < 0.15 else "standard",
        "attributes": {"region": region},
    }
