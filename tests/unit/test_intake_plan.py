"""``[intake]`` and the plan of which mailboxes are watched with IDLE: the per-login and total caps, the busiest
first, what start-up refuses, by key, and what systemd's status says about many mailboxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_config import base, problems

from ticketd.daemon.config import parse_config
from ticketd.daemon.config.mailboxes import Mailbox
from ticketd.daemon.intake.plan import login_of, watched


def mailboxes(tmp_path: Path, logins: dict[str, int]) -> list[Mailbox]:
    """``logins``: how many folders each login has (its INBOX, then F1, F2 …); named login/folder."""
    data: dict[str, Any] = base(tmp_path)
    data["mailboxes"] = []
    for login, folders in logins.items():
        (tmp_path / login).write_text("pw")
        data["mailboxes"] += [{"name": f"{login}-{n}", "folder": "INBOX" if n == 0 else f"F{n}", "username": login,
                               "password_file": str(tmp_path / login)} for n in range(folders)]
    return parse_config(data).polled_mailboxes()


def plan(boxes: list[Mailbox], activity: dict[str, float] | None = None, per_login: int = 5, idle_total: int = 500,
         now_watched: tuple[str, ...] = (), no_idle: tuple[str, ...] = ()) -> set[str]:
    return set(watched(boxes, activity or {}, per_login=per_login, idle_total=idle_total,
                       can_idle=lambda box: box.name not in no_idle, now_watched=now_watched))


def test_the_defaults_work_for_a_few_mailboxes_and_for_hundreds(tmp_path: Path) -> None:
    intake = parse_config(base(tmp_path)).intake
    assert (intake.workers, intake.connections_per_login, intake.idle_connections) == (4, 5, 500)
    assert (intake.idle_renew_seconds, intake.pushed_idle_renew_seconds) == (2, 10)
    assert intake.connections_per_login < 10  # Dovecot's mail_max_userip_connections, Gmail's is 15


@pytest.mark.parametrize(("intake", "expected"), [
    ({"workers": 0}, "intake.workers: Input should be greater than or equal to 1"),
    ({"connections_per_login": "3"}, "intake.connections_per_login: Input should be a valid integer"),
    ({"idle_connections": 0}, "intake.idle_connections: must be a positive integer"),
    ({"idle_renew_seconds": 1800}, "intake.idle_renew_seconds: Input should be less than or equal to 1740"),
    ({"idle_renew_seconds": 20}, "intake.pushed_idle_renew_seconds: must be at least idle_renew_seconds"),
    ({"threads": 4}, "intake.threads: unknown key"),
])
def test_a_wrong_intake_setting_names_its_key(tmp_path: Path, intake: dict[str, Any], expected: str) -> None:
    found = problems(base(tmp_path) | {"intake": intake})
    assert any(p.startswith(expected) for p in found), found


def test_every_folder_is_watched_while_its_login_has_room(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {"a": 3, "b": 1, "c": 5})
    assert plan(boxes) == {box.name for box in boxes}


def test_a_login_with_more_folders_than_connections_keeps_one_for_polling_the_rest(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {"a": 8, "b": 2})
    chosen = plan(boxes, per_login=3)
    assert chosen == {"a-0", "a-1", "b-0", "b-1"}  # a: 2 watched + 1 connection polling a-2 … a-7 in turn
    assert plan(boxes, per_login=1) == set()  # one connection per login: it polls every folder in turn


def test_the_busiest_folders_of_a_login_are_watched(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {"a": 6})
    assert plan(boxes, {"a-4": 30.0, "a-5": 2.0}, per_login=3) == {"a-4", "a-5"}


def test_a_watched_mailbox_keeps_its_place_until_another_is_clearly_busier(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {"a": 4})
    assert plan(boxes, {"a-3": 0.5}, per_login=2, now_watched=("a-0",)) == {"a-0"}
    assert plan(boxes, {"a-3": 1.5}, per_login=2, now_watched=("a-0",)) == {"a-3"}


def test_past_the_idle_cap_the_least_busy_are_polled(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {f"u{n}": 1 for n in range(10)})
    chosen = plan(boxes, {"u7-0": 4.0, "u8-0": 3.0}, idle_total=4)
    assert chosen == {"u7-0", "u8-0", "u0-0", "u1-0"}


def test_a_folder_whose_server_has_no_idle_is_polled_and_leaves_its_login_a_connection(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, {"a": 3})
    assert plan(boxes, per_login=3, no_idle=("a-1",)) == {"a-0", "a-2"}
    assert plan(boxes, per_login=2, no_idle=("a-1",)) == {"a-0"}


def test_logins_are_told_apart_by_server_and_account(tmp_path: Path) -> None:
    one, two = mailboxes(tmp_path, {"a": 1, "b": 1})
    assert login_of(one) != login_of(two)
    assert login_of(one) == login_of(Mailbox("other", one.imap.model_copy(update={"folder": "X"})))


def test_systemds_status_line_counts_mailboxes_when_there_are_many(tmp_path: Path) -> None:
    from ticketd.daemon.intake.mailbox import MailboxIntake
    from ticketd.daemon.runner import status_line

    config = parse_config(base(tmp_path))
    few = [MailboxIntake(box) for box in mailboxes(tmp_path, {"a": 2})]
    many = [MailboxIntake(box) for box in mailboxes(tmp_path, {f"u{n}": 1 for n in range(300)})]
    for box in few + many:
        box.state.held = True
    assert status_line(config, few) == "processing mail for support@acme.example (polling a-0, a-1)"
    assert status_line(config, many) == "processing mail for support@acme.example (polling 300 of 300 mailboxes)"
    for box in many[:7]:
        box.state.error = "IMAP unreachable (refused); retrying in 4 s"
    shown = status_line(config, many)
    assert shown.startswith("u0-0: IMAP unreachable (refused); retrying in 4 s; u1-0: ")
    assert shown.endswith("; 2 more mailboxes with errors") and shown.count("IMAP unreachable") == 5
