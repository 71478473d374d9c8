"""The ``[process.<type>]`` sections: the organisation's own stages of a ticket type and the moves between them.

```toml
[process.complaint]
stages = ["review", "decision", "unfounded", "caregivers", "completion"]   # the first is where tickets start
[process.complaint.stage.review]
next = ["decision", "unfounded"]   # the allowed moves; a stage without next is a last stage
group = "quality"                  # entering it hands the ticket to this group
target = "2d"                      # business time in the stage before the managers are told
state = "open"                     # the ticket state the stage means (default open)
```

A process whose moves name a stage that does not exist, or with a stage no move reaches, would leave tickets
stuck where nobody can move them: refused at start with the key. What the rules compute with is
``rules.process.Process`` (``ProcessTypeConfig.process``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from ticketd.daemon.config.fields import Section
from ticketd.daemon.config.sla import DurationField
from ticketd.parsers.commands import suggest
from ticketd.rules.process import Process, Stage

__all__ = ["ProcessTypeConfig", "StageConfig", "stage_problems"]

StageState = Literal["open", "pending", "resolved", "closed", "rejected"]


class StageConfig(Section):
    next: tuple[str, ...] = ()
    group: str | None = None
    target: DurationField | None = None
    state: StageState = "open"


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name or len(name) > 64 or not all(c.isalnum() or c in "-_" for c in name) \
            or name != name.lower():
        return f"{name!r} must be a lower-case word of letters, digits, '-' or '_' (agents write [stage={name}])"
    return None


class ProcessTypeConfig(Section):
    stages: tuple[str, ...] = Field(min_length=1)
    stage: dict[str, StageConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ProcessTypeConfig:
        problems: list[str] = []
        for index, name in enumerate(self.stages):
            if (problem := _name_problem(name)) is not None:
                problems.append(f"stages.{index}: {problem}")
            elif name in self.stages[:index]:
                problems.append(f"stages.{index}: {name!r} is listed twice")
        known = set(self.stages)
        for name, stage in self.stage.items():
            if name not in known:
                problems.append(f"stage.{name}: " + _unknown(name, self.stages) + " (list it in stages)")
                continue
            for index, target in enumerate(stage.next):
                if target not in known:
                    problems.append(f"stage.{name}.next.{index}: " + _unknown(target, self.stages))
                elif target == name:
                    problems.append(f"stage.{name}.next.{index}: a stage cannot move to itself")
        if self.stages and self.settings(self.stages[0]).state != "open":
            problems.append(f"stage.{self.stages[0]}.state: the first stage is where new tickets start, so it "
                            "must mean open")
        if not problems:
            reached = self._reachable()
            for index, name in enumerate(self.stages):
                if name not in reached:
                    problems.append(f"stages.{index}: {name!r} is unreachable: no move from {self.stages[0]!r} "
                                    "leads to it (add it to a stage's next)")
        if problems:  # one ValueError, one line per problem; the loader puts the section's key in front
            raise ValueError("; ".join(problems))
        return self

    def settings(self, name: str) -> StageConfig:
        return self.stage.get(name) or StageConfig()

    def _reachable(self) -> set[str]:
        seen, todo = {self.stages[0]}, [self.stages[0]]
        while todo:
            for target in self.settings(todo.pop()).next:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    def process(self, type_: str) -> Process:
        return Process(type_, tuple(Stage(name, self.settings(name).state, self.settings(name).next,
                                          self.settings(name).group, self.settings(name).target)
                                    for name in self.stages))


def stage_problems(process: Mapping[str, ProcessTypeConfig], known_groups: set[str]) -> list[str]:
    """A stage routing to a group nobody is in would hand its tickets to no one."""
    problems = []
    for type_, config in process.items():
        for name, stage in config.stage.items():
            if stage.group is not None and stage.group not in known_groups:
                hint = suggest(stage.group, known_groups)
                problems.append(f"process.{type_}.stage.{name}.group: unknown group {stage.group!r}"
                                + (f"; did you mean {hint}?" if hint else "")
                                + f" (groups: {', '.join(sorted(known_groups)) or 'none configured'})")
    return problems


def _unknown(name: str, choices: tuple[str, ...]) -> str:
    hint = suggest(name, choices)
    return f"unknown stage {name!r}" + (f"; did you mean {hint}?" if hint else "") + f" (stages: {', '.join(choices)})"
