"""Pure landscape rules: the health colour of an integration edge and its risk score.

No I/O here: app/services/landscape.py gathers the facts (runs of the last hour, breaker
states, contracts, owners) and these functions decide, so the rules are tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# At or above this share of failed runs in the window an edge is red, below it amber.
RED_FAILURE_RATE = 0.25
CRITICALITY_WEIGHT = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 4.0}
STALE_DAYS = 180  # a live version older than this was "last touched" long ago
VERY_STALE_DAYS = 365


@dataclass(frozen=True)
class WindowCounts:
    """Runs of one flow received in the health window, by outcome."""

    succeeded: int = 0
    filtered: int = 0
    failed: int = 0  # dead-lettered or rejected
    retrying: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.filtered + self.failed

    @property
    def failure_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0


@dataclass(frozen=True)
class Health:
    status: str  # green | amber | red | grey
    label: str  # healthy | degraded | failing | idle
    reason: str


def edge_health(counts: WindowCounts, breaker: str = "closed") -> Health:
    """Green: only successes; amber: some failures or retries; red: breaker open or many
    failures; grey: nothing happened in the window."""
    if breaker == "open":
        return Health("red", "failing", "the destination's circuit breaker is open")
    if counts.finished and counts.failure_rate >= RED_FAILURE_RATE:
        return Health(
            "red",
            "failing",
            f"{counts.failed} of {counts.finished} runs failed ({counts.failure_rate:.0%})",
        )
    if counts.failed or counts.retrying or breaker == "half_open":
        parts = []
        if counts.failed:
            parts.append(f"{counts.failed} of {counts.finished} runs failed")
        if counts.retrying:
            parts.append(f"{counts.retrying} waiting for a retry")
        if breaker == "half_open":
            parts.append("the breaker is trying one delivery")
        return Health("amber", "degraded", "; ".join(parts))
    if counts.finished or counts.waiting:
        return Health("green", "healthy", f"{counts.finished} runs, none failed")
    return Health("grey", "idle", "no runs in the window")


@dataclass(frozen=True)
class RiskFacts:
    """What is known about one integration (a live flow) for the risk ranking."""

    criticality: str  # the highest criticality of the systems it connects
    failure_rate: float  # failed / finished runs over the recent window (0..1)
    has_owner: bool  # a flow owner or a business/technical owner in the contract
    has_error_policy: bool  # an explicit retry policy on every delivery, or a contract policy
    has_pii: bool  # the contract marks a PII field
    unreviewed_changes: bool  # a newer version waits in draft or review
    days_since_change: float | None  # since the live version went live


@dataclass(frozen=True)
class RiskFactor:
    key: str
    label: str
    weight: float  # 1.0 = no extra risk
    explanation: str


@dataclass(frozen=True)
class Risk:
    score: float
    factors: tuple[RiskFactor, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "factors": [f.__dict__ for f in self.factors],
        }


def risk(facts: RiskFacts) -> Risk:
    """criticality × failure rate × missing owner × no error policy × PII × unreviewed
    changes × last touched: a product of weights ≥ 1, so one clean factor never hides the
    others (a 0 % failure rate does not zero the score)."""
    crit = CRITICALITY_WEIGHT.get(facts.criticality, CRITICALITY_WEIGHT["medium"])
    rate = max(0.0, min(1.0, facts.failure_rate))
    age = facts.days_since_change
    if age is None or age < STALE_DAYS:
        age_weight = 1.0
        age_text = "changed recently" if age is not None else "never went live"
    else:
        age_weight = 1.3 if age >= VERY_STALE_DAYS else 1.15
        age_text = f"last changed {int(age)} days ago: knowledge fades"
    factors = (
        RiskFactor(
            "criticality",
            "Criticality",
            crit,
            f"connects a {facts.criticality} system",
        ),
        RiskFactor(
            "failure_rate",
            "Recent failure rate",
            1.0 + 4.0 * rate,
            f"{rate:.0%} of recent runs failed",
        ),
        RiskFactor(
            "owner",
            "Missing owner",
            1.0 if facts.has_owner else 1.5,
            "has an owner" if facts.has_owner else "nobody owns it: failures go unanswered",
        ),
        RiskFactor(
            "error_policy",
            "No retry/dead-letter policy",
            1.0 if facts.has_error_policy else 1.5,
            "retry and dead-letter policy set"
            if facts.has_error_policy
            else "deliveries run on default retries; no agreed error policy",
        ),
        RiskFactor(
            "pii",
            "Personal data",
            1.3 if facts.has_pii else 1.0,
            "carries personal data (PII)" if facts.has_pii else "no PII declared",
        ),
        RiskFactor(
            "unreviewed",
            "Unreviewed changes",
            1.2 if facts.unreviewed_changes else 1.0,
            "a newer version waits for review"
            if facts.unreviewed_changes
            else "no pending changes",
        ),
        RiskFactor("last_touched", "Last touched", age_weight, age_text),
    )
    score = 1.0
    for factor in factors:
        score *= factor.weight
    return Risk(round(score, 2), factors)
