"""The agent command grammar: exact commands, errors, title and text for every rule of the syntax."""

from __future__ import annotations

import pytest

from ticketd.parsers.commands import (
    LONG_FIELDS,
    VALUE_KEYS,
    VERBS,
    Command,
    CommandError,
    ParsedCommands,
    parse_commands,
    suggest,
)

ALL_VERBS = [
    "take", "resolve", "close", "pending", "reopen", "reject", "note", "spam", "unblock", "quote",
    "satisfied", "not-satisfied", "help",
    "split", "force",  # issue 18: process
]  # fmt: skip
ALL_KEYS = ["status", "priority", "type", "category", "due", "assign", "merge", "customer", "source", "cc", "reply",
            "action-done", "action-cancel", "stage", "parent", "link"]


def sub(name: str, value: str | None, raw: str) -> Command:
    return Command(name, value, "subject", raw)


def body(name: str, value: str, raw: str) -> Command:
    return Command(name, value, "body", raw)


def test_public_name_sets() -> None:
    assert frozenset(ALL_VERBS) == VERBS
    assert frozenset(ALL_KEYS) == VALUE_KEYS
    assert frozenset({"root-cause", "action-plan", "cost", "resolution", "action", "action-result", "time"}) \
        == LONG_FIELDS


def test_spec_example() -> None:
    parsed = parse_commands("Re: [ACME #1042] Modem keeps dropping [status=resolved; priority=high]", "")
    assert parsed == ParsedCommands(
        commands=(sub("status", "resolved", "status=resolved"), sub("priority", "high", "priority=high")),
        errors=(),
        title="Re: [ACME #1042] Modem keeps dropping",
        text="",
    )


@pytest.mark.parametrize("verb", ALL_VERBS)
def test_each_verb_alone(verb: str) -> None:
    parsed = parse_commands(f"Modem [{verb}]", "")
    assert parsed.commands == (sub(verb, None, verb),)
    assert parsed.errors == ()
    assert parsed.title == "Modem"


@pytest.mark.parametrize("key", ALL_KEYS)
def test_each_key_alone(key: str) -> None:
    parsed = parse_commands(f"[{key}=some value] Modem", "")
    assert parsed.commands == (sub(key, "some value", f"{key}=some value"),)
    assert parsed.errors == ()
    assert parsed.title == "Modem"


def test_whitespace_inside_group() -> None:
    parsed = parse_commands("Modem [  status = resolved ;  priority=high  ]", "")
    assert parsed.commands == (sub("status", "resolved", "status = resolved"), sub("priority", "high", "priority=high"))
    assert parsed.errors == ()


def test_mixed_group_of_verb_and_pairs() -> None:
    parsed = parse_commands("Modem [take; priority=high]", "")
    assert parsed.commands == (sub("take", None, "take"), sub("priority", "high", "priority=high"))
    assert (parsed.errors, parsed.title) == ((), "Modem")


def test_multiple_groups_anywhere_in_order() -> None:
    parsed = parse_commands("[take] Modem [priority=urgent] keeps [due=2025-02-01] dropping [pending]", "")
    assert parsed.commands == (
        sub("take", None, "take"),
        sub("priority", "urgent", "priority=urgent"),
        sub("due", "2025-02-01", "due=2025-02-01"),
        sub("pending", None, "pending"),
    )
    assert parsed.title == "Modem keeps dropping"


def test_values_with_special_characters() -> None:
    parsed = parse_commands(
        "x [assign=ali.veli@acme.com; merge=#1041; customer=Acme Ltd - İzmir; due=2025-02-01 17:00]", ""
    )
    assert parsed.commands == (
        sub("assign", "ali.veli@acme.com", "assign=ali.veli@acme.com"),
        sub("merge", "#1041", "merge=#1041"),
        sub("customer", "Acme Ltd - İzmir", "customer=Acme Ltd - İzmir"),
        sub("due", "2025-02-01 17:00", "due=2025-02-01 17:00"),
    )
    assert parsed.errors == ()


def test_turkish_value() -> None:
    parsed = parse_commands("Bağlantı kopuyor [category=donanım/modem]", "")
    assert parsed.commands == (sub("category", "donanım/modem", "category=donanım/modem"),)
    assert parsed.title == "Bağlantı kopuyor"


@pytest.mark.parametrize("bracket", ["[SPAM]", "[EXTERNAL]", "[Fwd]", "[Take]", "[Status=resolved]", "[urgent]"])
def test_non_command_brackets_stay_in_title(bracket: str) -> None:
    parsed = parse_commands(f"{bracket} Modem  keeps dropping [close]", "")
    assert parsed.commands == (sub("close", None, "close"),)
    assert parsed.errors == ()
    assert parsed.title == f"{bracket} Modem keeps dropping"


def test_subject_without_commands_only_collapses_whitespace() -> None:
    parsed = parse_commands("  Re:  [ACME #7]   Modem\t keeps [urgent] dropping (again) ", "")
    assert parsed == ParsedCommands((), (), "Re: [ACME #7] Modem keeps [urgent] dropping (again)", "")


def test_unknown_key_gives_error_with_suggestion() -> None:
    parsed = parse_commands("Modem [priorty=high]", "")
    assert parsed.commands == ()
    assert parsed.errors == (CommandError("priorty=high", "unknown command 'priorty'; did you mean 'priority'?"),)
    assert parsed.title == "Modem"


def test_unknown_key_without_close_match() -> None:
    parsed = parse_commands("Modem [zzz=1; take]", "")
    assert parsed.commands == (sub("take", None, "take"),)
    assert parsed.errors == (CommandError("zzz=1", "unknown command 'zzz'"),)


def test_unknown_word_inside_a_command_group_is_an_error() -> None:
    parsed = parse_commands("Modem [resolv; priority=low]", "")
    assert parsed.commands == (sub("priority", "low", "priority=low"),)
    assert parsed.errors == (CommandError("resolv", "unknown command 'resolv'; did you mean 'resolve'?"),)
    assert parsed.title == "Modem"


def test_group_with_a_non_command_item_is_left_alone() -> None:
    parsed = parse_commands("Modem [take; Priority=high]", "")
    assert parsed == ParsedCommands((), (), "Modem [take; Priority=high]", "")


@pytest.mark.parametrize(
    ("subject", "error"),
    [
        ("x [status=]", CommandError("status=", "'status' needs a value, e.g. [status=resolved]")),
        ("x [status=   ]", CommandError("status=", "'status' needs a value, e.g. [status=resolved]")),
        ("x [status]", CommandError("status", "'status' needs a value, e.g. [status=resolved]")),
        ("x [assign]", CommandError("assign", "'assign' needs an agent or a group as its value "
                                             "(the help reply lists them)")),
        ("x [category=]", CommandError("category=", "'category' needs a category as its value "
                                                    "(the help reply lists them)")),
        ("x [type]", CommandError("type", "'type' needs a value, e.g. [type=complaint]")),
        ("x [cc]", CommandError("cc", "'cc' needs a value, e.g. [cc=name@example.com]")),
        ("x [take=ali]", CommandError("take=ali", "'take' takes no value (to assign someone else use [assign=ali])")),
        ("x [close=now]", CommandError("close=now", "'close' takes no value, write [close]")),
        ("x []", CommandError("[]", "empty command group []")),
        ("x [  ]", CommandError("[  ]", "empty command group [  ]")),
    ],
)
def test_malformed_items(subject: str, error: CommandError) -> None:
    parsed = parse_commands(subject, "")
    assert parsed.commands == ()
    assert parsed.errors == (error,)
    assert parsed.title == "x"


def test_stray_semicolons_are_tolerated() -> None:
    parsed = parse_commands("x [take;; close;]", "")
    assert parsed.commands == (sub("take", None, "take"), sub("close", None, "close"))
    assert parsed.errors == ()


def test_conflicting_values_across_subject_and_body() -> None:
    parsed = parse_commands("x [priority=high; take]", "Priority: low\n\nDone.")
    assert parsed.commands == (sub("take", None, "take"),)
    assert parsed.errors == (
        CommandError("priority=high; Priority: low", "conflicting values for 'priority': 'high' and 'low'"),
    )
    assert parsed.text == "Done."


def test_three_conflicting_values() -> None:
    parsed = parse_commands("x [status=open] [status=pending]", "Status: resolved")
    assert parsed.commands == ()
    assert parsed.errors[0].message == "conflicting values for 'status': 'open', 'pending' and 'resolved'"


def test_identical_duplicates_collapse_to_first() -> None:
    parsed = parse_commands("x [priority=high] [take] [take]", "Priority: high\nPriority:  HIGH")
    assert parsed.commands == (sub("priority", "high", "priority=high"), sub("take", None, "take"))
    assert parsed.errors == ()


def test_body_block_with_all_short_keys_case_insensitive() -> None:
    text = "\n\nSTATUS: resolved\npriority: high\nType: incident\nCategory: donanım/modem\nDue: 2025-02-01\n"
    text += "Assign: ali@acme.com\nMerge: 1041\nCustomer: Acme Ltd\nSource: phone\nThanks, fixed.\n"
    parsed = parse_commands("Modem", text)
    assert parsed.commands == (
        body("status", "resolved", "STATUS: resolved"),
        body("priority", "high", "priority: high"),
        body("type", "incident", "Type: incident"),
        body("category", "donanım/modem", "Category: donanım/modem"),
        body("due", "2025-02-01", "Due: 2025-02-01"),
        body("assign", "ali@acme.com", "Assign: ali@acme.com"),
        body("merge", "1041", "Merge: 1041"),
        body("customer", "Acme Ltd", "Customer: Acme Ltd"),
        body("source", "phone", "Source: phone"),
    )
    assert (parsed.errors, parsed.title, parsed.text) == ((), "Modem", "Thanks, fixed.")


def test_body_block_with_continuation_lines() -> None:
    text = (
        "Status: resolved\n"
        "Root-Cause: firmware bug in\n"
        "  the modem's DSL stack\n"
        "\tafter the 3.2 update\n"
        "Resolution: rolled back firmware\n"
        "\n"
        "Hello Ayşe,\n"
        "  indented prose stays.\n"
    )
    parsed = parse_commands("x", text)
    assert parsed.commands == (
        body("status", "resolved", "Status: resolved"),
        body(
            "root-cause",
            "firmware bug in\nthe modem's DSL stack\nafter the 3.2 update",
            "Root-Cause: firmware bug in\n  the modem's DSL stack\n\tafter the 3.2 update",
        ),
        body("resolution", "rolled back firmware", "Resolution: rolled back firmware"),
    )
    assert parsed.errors == ()
    assert parsed.text == "Hello Ayşe,\n  indented prose stays."


def test_long_field_value_may_start_on_the_next_line() -> None:
    parsed = parse_commands("x", "Action-Plan:\n  1. replace modem\n  2. call back\nok")
    assert parsed.commands == (
        body("action-plan", "1. replace modem\n2. call back", "Action-Plan:\n  1. replace modem\n  2. call back"),
    )
    assert parsed.text == "ok"


def test_long_fields_after_prose_are_removed() -> None:
    text = "We swapped the modem today.\nCost: 150 TRY\nresolution: new modem\n   installed on site\nBye.\n"
    parsed = parse_commands("x", text)
    assert parsed.commands == (
        body("cost", "150 TRY", "Cost: 150 TRY"),
        body("resolution", "new modem\ninstalled on site", "resolution: new modem\n   installed on site"),
    )
    assert parsed.text == "We swapped the modem today.\nBye."


def test_short_keys_after_prose_are_text() -> None:
    parsed = parse_commands("x", "Hi,\nStatus: resolved\n")
    assert parsed == ParsedCommands((), (), "x", "Hi,\nStatus: resolved")


def test_blank_line_ends_the_block() -> None:
    parsed = parse_commands("x", "Priority: high\n\nStatus: resolved")
    assert parsed.commands == (body("priority", "high", "Priority: high"),)
    assert parsed.text == "Status: resolved"


@pytest.mark.parametrize("first", ["Note: I called him", "Hello: world", "PS: see below", "Take: it"])
def test_prose_starting_with_unknown_key_is_untouched(first: str) -> None:
    text = f"{first}\nStatus: resolved\nMore text."
    parsed = parse_commands("x", text)
    assert parsed == ParsedCommands((), (), "x", text)


def test_indented_or_quoted_long_field_is_prose() -> None:
    text = "Text\n  Cost: 5\n> Resolution: old"
    assert parse_commands("x", text).text == text


def test_empty_body_values_are_errors() -> None:
    parsed = parse_commands("x", "Status:\nRoot-Cause:\nText")
    assert parsed.commands == ()
    assert parsed.errors == (
        CommandError("Status:", "'status' needs a value, e.g. Status: resolved"),
        CommandError("Root-Cause:", "'root-cause' needs a value, e.g. Root-Cause: firmware bug"),
    )
    assert parsed.text == "Text"


def test_subject_then_body_order_and_crlf() -> None:
    parsed = parse_commands("x [take]", "\r\n\r\nStatus: pending\r\nWaiting for parts.\r\n\r\n")
    assert parsed.commands == (sub("take", None, "take"), body("status", "pending", "Status: pending"))
    assert parsed.text == "Waiting for parts."


def test_long_field_in_subject_is_accepted() -> None:
    parsed = parse_commands("x [root-cause=loose cable]", "")
    assert parsed.commands == (sub("root-cause", "loose cable", "root-cause=loose cable"),)


def test_suggest() -> None:
    assert suggest("priorty", VALUE_KEYS) == "priority"
    assert suggest("asign", VALUE_KEYS) == "assign"
    assert suggest("xyzzy", VALUE_KEYS) is None
    assert suggest("not-satisfed", VERBS) == "not-satisfied"


def test_cc_and_reply_may_repeat_where_other_keys_conflict() -> None:
    """[cc=…] and [reply=…] add up; two different priorities contradict each other and neither is applied."""
    parsed = parse_commands("x [cc=a@example.com; cc=b@example.com; reply=hello; reply=bye]", "")
    assert [(c.name, c.value) for c in parsed.commands] == [
        ("cc", "a@example.com"), ("cc", "b@example.com"), ("reply", "hello"), ("reply", "bye")]
    assert parsed.errors == ()
    conflicting = parse_commands("x [priority=high; priority=low]", "")
    assert conflicting.commands == ()
    assert conflicting.errors[0].message == "conflicting values for 'priority': 'high' and 'low'"


@pytest.mark.parametrize("key", sorted(VALUE_KEYS | LONG_FIELDS))
def test_every_example_in_an_error_is_a_valid_value(key: str) -> None:
    """An error shows a value to copy only where that value is valid on every helpdesk (no 'incident' type, no
    category that may not exist): copying it must never produce a second error."""
    from ticketd.rules.commands import PRIORITIES, SOURCES, TYPES
    from ticketd.rules.states import STATES

    message = parse_commands(f"x [{key}]", "").errors[0].message
    if "help reply lists them" in message:
        return
    example = message.split("e.g. [", 1)[1].rstrip("]").split("=", 1)[1]
    valid = {"status": STATES, "priority": PRIORITIES, "type": TYPES, "source": SOURCES}
    if key in valid:
        assert example in valid[key]
    elif key in ("customer", "cc"):
        from ticketd.parsers.message import strict_address

        assert strict_address(example) == example
    elif key == "due":
        from datetime import date

        date.fromisoformat(example)
    elif key == "merge":
        assert example.startswith("#") and example[1:].isdigit()
