"""The ticket state graph of DESIGN.md §4; any move outside it is refused with a reason."""

from __future__ import annotations

STATES = ("new", "open", "pending", "resolved", "closed", "rejected")

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "resolved", "closed", "rejected"}),
    "open": frozenset({"pending", "resolved", "closed", "rejected"}),
    "pending": frozenset({"open", "resolved", "closed", "rejected"}),
    "resolved": frozenset({"open", "closed"}),
    "closed": frozenset({"open"}),
    "rejected": frozenset({"open"}),
}

# States in which the customer's reply means "not done yet".
REOPENED_BY_CUSTOMER = frozenset({"pending", "resolved"})
OPEN_STATES = frozenset({"new", "open", "pending"})


def transition_error(current: str, target: str) -> str | None:
    """None when the move is allowed, else the sentence the agent reads."""
    if target not in STATES:
        return f"unknown state {target!r}; states are {', '.join(STATES)}"
    if target == current:
        return None
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        return f"a {current} ticket cannot become {target} (from {current}: {allowed})"
    return None


def set_state_allowed(current: str, target: str) -> bool:
    return transition_error(current, target) is None
