"""The ``[actions]`` section: when an action item's last reminder goes out (``daemon.stages.actions``)."""

from __future__ import annotations

from ticketd.daemon.config.fields import Section
from ticketd.daemon.config.sla import DurationField
from ticketd.rules.sla import parse_duration


class ActionsConfig(Section):
    # Business time after an action's due time when its owner is reminded once more that it is still open.
    overdue_after: DurationField = parse_duration("1d")
