"""`Cost:` and `Time:` values: amounts in Turkish and English notation read exactly, ambiguous ones refused with
both readings, currencies checked against those in use, durations in every shape agents write; and the JSON
number an amount becomes is the amount itself."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketd.daemon.cli.ledger_views import json_amount
from ticketd.parsers.commands import parse_commands
from ticketd.parsers.ledger import LedgerError, minutes_text, parse_amount, parse_cost, parse_minutes

DAY = date(2026, 12, 4)


@pytest.mark.parametrize(("value", "amount", "currency", "reason"), [
    ("1.250,50 TRY", "1250.50", "TRY", None),  # Turkish notation
    ("1,250.50 EUR", "1250.50", "EUR", None),  # English notation
    ("300 TRY; replacement modem", "300.00", "TRY", "replacement modem"),
    ("300 TRY;   two  spaces ; and a semicolon", "300.00", "TRY", "two spaces ; and a semicolon"),
    ("1.250 TRY", "1250.00", "TRY", None),  # 1.250 lira would have three decimals: thousands
    ("1,250 TRY", "1250.00", "TRY", None),
    ("1.250 JPY", "1250", "JPY", None),
    ("1.250.000 TRY", "1250000.00", "TRY", None),
    ("1,250,000.75 USD", "1250000.75", "USD", None),
    ("1 250,50 TRY", "1250.50", "TRY", None),  # grouped by spaces
    ("1\u00a0250,50 EUR", "1250.50", "EUR", None),  # by a no-break space
    ("12,5 TRY", "12.50", "TRY", None),
    ("12.5 EUR", "12.50", "EUR", None),
    ("1250,5 TRY", "1250.50", "TRY", None),
    ("0,500 TRY", "0.50", "TRY", None),  # a leading 0 never groups; the surplus decimal is a zero
    ("1250.500 EUR", "1250.50", "EUR", None),  # more than three digits before the mark: a decimal mark
    ("1.2500 KWD", "1.250", "KWD", None),
    ("1.250,500 KWD", "1250.500", "KWD", None),
    ("TRY 300", "300.00", "TRY", None),
    ("300TRY", "300.00", "TRY", None),
    ("300 try", "300.00", "TRY", None),
    ("300 TL", "300.00", "TRY", None),
    ("₺300", "300.00", "TRY", None),
    ("€ 12,5", "12.50", "EUR", None),
    ("-300 TRY; refund", "-300.00", "TRY", "refund"),
    ("1.25 TRY", "1.25", "TRY", None),
    ("150 TRY; first\nsecond", "150.00", "TRY", "first second"),
    ("150 TRY; \u202ereversed", "150.00", "TRY", "reversed"),  # no bidirectional override in a reason
])
def test_amounts_read_exactly(value: str, amount: str, currency: str, reason: str | None) -> None:
    line = parse_cost(value, DAY)
    assert (line.amount, line.currency, line.reason) == (Decimal(amount), currency, reason)
    assert str(line.amount) == amount  # exactly the currency's decimals


@pytest.mark.parametrize(("value", "message"), [
    ("1.250 KWD", "1.250 KWD is ambiguous: 1250 or 1.250? Write 1250 KWD for the first or 1.2500 KWD"),
    ("1,250 BHD", "is ambiguous: 1250 or 1.250?"),
    ("12.50 JPY", "JPY has no decimal places, 12.50 has 2"),
    ("1250.505 EUR", "EUR has 2 decimal places, 1250.505 has 3"),
    ("1,2,3 TRY", "is not an amount: thousands are grouped by three"),
    ("1.250.50 TRY", "is not an amount: thousands are grouped by three"),
    ("1,25.50 EUR", "is not an amount"),
    ("about 150 TRY", "is not an amount with its currency"),
    ("150", "is not an amount with its currency"),
    ("TRY", "is not an amount with its currency"),
    ("; just a reason", "is not an amount with its currency"),
    ("12 EURO", "is not an amount with its currency"),
    ("0 TRY", "is nothing"),
    ("0,00 EUR", "is nothing"),
    ("150 ABC", "'ABC' is not an ISO 4217 currency code"),
    ("150 TRL", "'TRL' is not a currency in use today; did you mean TRY?"),  # the lira before 2005
    ("150 XXX", "'XXX' is not a currency in use today"),  # "no currency"
    ("$12", "'$' names several currencies"),
    ("£12", "'£' names several currencies"),
    ("1000000000000 TRY", "too large for one cost line"),
    ("150 TRY; " + "x" * 501, "at most 500"),
    ("150 TRY\nmore words", "is not an amount with its currency"),  # a continuation line is a reason after ';'

])
def test_nonsense_and_ambiguity_are_refused_with_a_sentence(value: str, message: str) -> None:
    with pytest.raises(LedgerError) as refused:
        parse_cost(value, DAY)
    assert message in str(refused.value)


def test_the_currency_must_be_in_use_on_the_day() -> None:
    assert parse_cost("100 HRK", date(2022, 6, 1)).currency == "HRK"  # Croatia's kuna, until 2023
    with pytest.raises(LedgerError, match="not a currency in use today; did you mean"):
        parse_cost("100 HRK", DAY)


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2))
def test_every_amount_written_in_either_notation_reads_back(amount: Decimal) -> None:
    english = f"{amount:,.2f}"
    turkish = english.replace(",", " ").replace(".", ",").replace(" ", ".")
    assert parse_amount(english, "EUR") == amount
    assert parse_amount(turkish, "TRY") == amount
    assert parse_amount(f"{amount:f}", "EUR") == amount


@given(st.decimals(min_value=Decimal("-999999999999.999"), max_value=Decimal("999999999999.999"), places=3))
def test_an_amount_is_exactly_its_json_number(amount: Decimal) -> None:
    text = json.dumps({"amount": json_amount(amount)})
    assert json.loads(text, parse_float=Decimal, parse_int=Decimal)["amount"] == amount


@pytest.mark.parametrize(("value", "minutes"), [
    ("30m", 30), ("1h30m", 90), ("2h", 120), ("90m", 90), ("1h 30m", 90), ("1.5h", 90), ("1,5h", 90),
    ("0.25h", 15), ("1:30", 90), ("0:45", 45), ("45 min", 45), ("2 hours", 120), ("1 hour 5 minutes", 65),
    ("1sa 30dk", 90), ("1 saat 30 dakika", 90), ("45dk", 45), ("24h", 1440), ("1440m", 1440), ("-15m", -15),
    ("1H30M", 90),
])
def test_durations(value: str, minutes: int) -> None:
    assert parse_minutes(value) == minutes


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "is not a duration"), ("", "is not a duration"), ("h", "is not a duration"),
    ("30", "has no unit: 30m or 30h?"), ("1.5", "has no unit"), ("0m", "is no time"), ("0h", "is no time"),
    ("25h", "more than 24 hours in one line"), ("1441m", "more than 24 hours"), ("1h90m", "stay under 60"),
    ("1.33h", "not a whole number of minutes"), ("1d", "is not a duration"), ("30m 1h", "is not a duration"),
])
def test_nonsense_durations_are_refused(value: str, message: str) -> None:
    with pytest.raises(LedgerError) as refused:
        parse_minutes(value)
    assert message in str(refused.value)


def test_minutes_for_people() -> None:
    assert [minutes_text(m) for m in (0, 15, 60, 90, 225, -15)] == ["0m", "15m", "1h", "1h30m", "3h45m", "-15m"]


def test_grammar_keeps_every_ledger_line_and_takes_time_from_the_subject() -> None:
    """Several Cost: lines in one mail are several entries, identical ones too; they are never conflicts."""
    parsed = parse_commands("Re: [ACME #1] Modem [time=1h30m]",
                            "Done.\nCost: 300 TRY; cable\nCost: 300 TRY; cable\nCost: 12 EUR\nTime: 30m\n")
    assert parsed.errors == ()
    assert [(c.name, c.value, c.source) for c in parsed.commands] == [
        ("time", "1h30m", "subject"), ("cost", "300 TRY; cable", "body"), ("cost", "300 TRY; cable", "body"),
        ("cost", "12 EUR", "body"), ("time", "30m", "body")]
    assert parsed.text == "Done."
