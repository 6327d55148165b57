"""A small bank of plausible survey comments, picked by how the respondent feels."""

from __future__ import annotations

POSITIVE: tuple[str, ...] = (
    "Dashboards save my team hours every week.",
    "Support answered within minutes and fixed it on the first try.",
    "Easy to roll out, everyone picked it up quickly.",
    "The automation rules are exactly what we needed.",
    "Reliable, fast, and the API is well documented.",
    "Great onboarding, our CSM was very helpful.",
    "Reports are now the first thing I open in the morning.",
)
NEUTRAL: tuple[str, ...] = (
    "Does the job, but the UI could be simpler.",
    "Good product, pricing is a bit high for a team our size.",
    "Fine overall; search could be faster.",
    "Mobile app is okay, missing a few things from the web version.",
    "Setup took longer than expected.",
)
NEGATIVE: tuple[str, ...] = (
    "Too expensive for how little we use it.",
    "We keep hitting bugs in the integrations and nobody follows up.",
    "Third ticket this month about the same problem.",
    "The export keeps timing out, we cannot get our data out.",
    "Hard to use, most of my team stopped logging in.",
    "Support took days to respond to an urgent issue.",
    "Missing SSO options we need, evaluating alternatives.",
    "Performance has gotten worse over the last few weeks.",
)


def bank_for(sentiment: float) -> tuple[str, ...]:
    """The comment bank for a sentiment in [0, 1] (0 = very unhappy)."""
    if sentiment >= 0.7:
        return POSITIVE
    if sentiment >= 0.45:
        return NEUTRAL
    return NEGATIVE
