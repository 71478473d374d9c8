"""The grammar of agent commands in a subject line and at the top of a reply body.

Pure syntax: nothing here knows tickets, agents or valid values, so the rules module can decide what a
command means and the tests can pin the grammar down exactly. Anything ambiguous is reported as a
`CommandError` rather than guessed, because a silently misread command changes a customer's ticket.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

VALUE_KEYS: frozenset[str] = frozenset(
    {"status", "priority", "type", "category", "due", "assign", "merge", "customer", "source", "cc", "reply",
     "action-done", "action-cancel", "stage", "parent", "link"}
)
VERBS: frozenset[str] = frozenset(
    {"take", "resolve", "close", "pending", "reopen", "reject", "note", "spam", "unblock", "quote",
     "satisfied", "not-satisfied", "help", "split", "force"}
)  # fmt: skip
LONG_FIELDS: frozenset[str] = frozenset(
    {"root-cause", "action-plan", "cost", "resolution", "action", "action-result", "time"}
)
# Keys that may come more than once in one mail, each adding to the others ([cc=a@x; cc=b@y]).
MULTI_KEYS: frozenset[str] = frozenset({"cc", "reply", "action", "action-result", "action-done", "action-cancel",
                                       "link", "cost", "time"})
# Ledger lines: every one is an entry of its own, a repeat included (two "Cost: 300 TRY; cable" lines are two
# cables), so they are never collapsed as identical repeats of other keys are.
ENTRY_KEYS: frozenset[str] = frozenset({"cost", "time"})

# Error messages show a value the agent can copy straight from the reply, so only values that are valid
# everywhere: the fixed choices, a date, an address shape. Where the valid values are the helpdesk's own
# (categories, agents, groups, canned replies) the message points to the help reply, which lists them.
_EXAMPLES: dict[str, str] = {
    "status": "resolved", "priority": "high", "type": "complaint", "due": "2026-12-31", "merge": "#1041",
    "customer": "name@example.com", "source": "phone", "cc": "name@example.com",
    "root-cause": "firmware bug", "action-plan": "replace the modem", "cost": "1.250,50 TRY",
    "resolution": "replaced the modem", "action": "call the customer back; owner=ali; due=2d",
    "action-result": "12 the modem was replaced", "action-done": "12", "action-cancel": "12",
    "parent": "#1040", "link": "#1040", "time": "1h30m",
}  # fmt: skip
_LISTED_IN_HELP = {"category": "a category", "assign": "an agent or a group", "reply": "a canned reply's name",
                   "stage": "a stage of the ticket type's process"}

_GROUP = re.compile(r"\[([^\[\]]*)\]")
# Lowercase only: gateways add [SPAM], [EXTERNAL], [Fwd] and those must never be read as commands.
_PAIR = re.compile(r"([a-z][a-z0-9-]*)\s*=(.*)", re.DOTALL)
_WORD = re.compile(r"[a-z][a-z0-9-]*")
_BODY_LINE = re.compile(r"([A-Za-z][A-Za-z-]*)[ \t]*:[ \t]*(.*)")
_SUBJECT_KEYS = VALUE_KEYS | LONG_FIELDS
_ALL_NAMES = VALUE_KEYS | VERBS | LONG_FIELDS


@dataclass(frozen=True)
class Command:
    name: str  # canonical lowercase: "status", "take", "root-cause", ...
    value: str | None  # None for bare verbs
    source: str  # "subject" or "body"
    raw: str  # as written, e.g. "priority=hgh" or "Root-Cause: firmware bug"


@dataclass(frozen=True)
class CommandError:
    raw: str
    message: str


@dataclass(frozen=True)
class ParsedCommands:
    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    title: str  # subject with command groups removed, whitespace collapsed
    text: str  # body with command lines removed, blank edges trimmed


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """Typos are the commonest agent mistake; naming the likely key turns an error into a one-glance fix."""
    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown(name: str, raw: str) -> CommandError:
    hint = suggest(name, _ALL_NAMES)
    message = f"unknown command {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
    return CommandError(raw, message)


def _is_command_item(item: str) -> bool:
    return bool(_PAIR.fullmatch(item) or _WORD.fullmatch(item))


def _is_command_group(items: list[str]) -> bool:
    """Only groups that clearly speak the grammar are consumed, so ordinary bracketed words stay in the title."""
    if not all(_is_command_item(item) for item in items):
        return False
    return any(_PAIR.fullmatch(item) or item in VERBS or item in _SUBJECT_KEYS for item in items)


def _needs_value(name: str, body: bool = False) -> str:
    if name in _LISTED_IN_HELP:
        return f"{name!r} needs {_LISTED_IN_HELP[name]} as its value (the help reply lists them)"
    example = f"{name.title()}: {_EXAMPLES[name]}" if body else f"[{name}={_EXAMPLES[name]}]"
    return f"{name!r} needs a value, e.g. {example}"


def _subject_item(item: str) -> Command | CommandError:
    pair = _PAIR.fullmatch(item)
    if pair is None:
        if item in VERBS:
            return Command(item, None, "subject", item)
        if item in _SUBJECT_KEYS:
            return CommandError(item, _needs_value(item))
        return _unknown(item, item)
    name, value = pair.group(1), " ".join(pair.group(2).split())
    if name in VERBS:
        if name == "take" and value:
            return CommandError(item, f"'take' takes no value (to assign someone else use [assign={value}])")
        return CommandError(item, f"{name!r} takes no value, write [{name}]")
    if name not in _SUBJECT_KEYS:
        return _unknown(name, item)
    if not value:
        return CommandError(item, _needs_value(name))
    return Command(name, value, "subject", item)


def _parse_subject(subject: str) -> tuple[list[Command | CommandError], str]:
    found: list[Command | CommandError] = []

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        if not inner.strip():
            found.append(CommandError(match.group(0), f"empty command group {match.group(0)}"))
            return " "
        # A stray trailing or doubled ';' is a harmless slip, not worth rejecting the whole group for.
        items = [item.strip() for item in inner.split(";") if item.strip()]
        if not _is_command_group(items):
            return match.group(0)
        found.extend(_subject_item(item) for item in items)
        return " "

    title = _GROUP.sub(replace, subject)
    return found, " ".join(title.split())


def _parse_body(body: str) -> tuple[list[Command | CommandError], str]:
    """The top block and long fields anywhere; unknown keys are prose, because people write 'Note:' and 'PS:'."""
    lines = body.splitlines()
    found: list[Command | CommandError] = []
    text: list[str] = []
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    in_block = True
    while i < len(lines):
        line = lines[i]
        match = _BODY_LINE.fullmatch(line.rstrip())
        name = match.group(1).lower() if match else ""
        if match and name in LONG_FIELDS:
            raw_lines, parts = [line.rstrip()], [match.group(2).strip()]
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "\t") and lines[i].strip():
                raw_lines.append(lines[i].rstrip())
                parts.append(lines[i].strip())
                i += 1
            found.append(_body_command(name, "\n".join(p for p in parts if p), "\n".join(raw_lines)))
            continue
        if in_block and match and name in VALUE_KEYS:
            found.append(_body_command(name, " ".join(match.group(2).split()), line.strip()))
        else:
            in_block = False
            text.append(line)
        i += 1
    while text and not text[0].strip():
        text.pop(0)
    while text and not text[-1].strip():
        text.pop()
    return found, "\n".join(text)


def _body_command(name: str, value: str, raw: str) -> Command | CommandError:
    if not value:
        return CommandError(raw, _needs_value(name, body=True))
    return Command(name, value, "body", raw)


def _same(value: str | None) -> str | None:
    return None if value is None else " ".join(value.split()).casefold()


def _resolve_duplicates(commands: list[Command]) -> tuple[list[Command], list[CommandError]]:
    """Identical repeats are collapsed; differing values drop the key, as neither can be trusted over the other."""
    by_name: dict[str, list[Command]] = {}
    for command in commands:
        by_name.setdefault(command.name, []).append(command)
    errors: list[CommandError] = []
    conflicting: set[str] = set()
    for name, group in by_name.items():
        if name in MULTI_KEYS:
            continue
        distinct: dict[str | None, Command] = {}
        for command in group:
            distinct.setdefault(_same(command.value), command)
        if len(distinct) > 1:
            conflicting.add(name)
            values = [repr(c.value) for c in distinct.values()]
            listed = ", ".join(values[:-1]) + " and " + values[-1]
            raw = "; ".join(c.raw for c in group)
            errors.append(CommandError(raw, f"conflicting values for {name!r}: {listed}"))
    kept: list[Command] = []
    seen: set[tuple[str, str | None]] = set()
    for command in commands:
        key = (command.name, _same(command.value))
        if command.name in conflicting or (key in seen and command.name not in ENTRY_KEYS):
            continue
        seen.add(key)
        kept.append(command)
    return kept, errors


def parse_commands(subject: str, body: str) -> ParsedCommands:
    """Subject first, then body, so the order of `commands` matches the order an agent reads the mail."""
    subject_found, title = _parse_subject(subject)
    body_found, text = _parse_body(body)
    found = subject_found + body_found
    commands = [item for item in found if isinstance(item, Command)]
    errors = [item for item in found if isinstance(item, CommandError)]
    commands, conflicts = _resolve_duplicates(commands)
    return ParsedCommands(tuple(commands), tuple(errors + conflicts), title, text)
