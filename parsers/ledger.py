"""Amounts with their currency, and durations, as agents write them in `Cost:` and `Time:` lines.

Pure syntax plus Babel's locale data: nothing here knows tickets. A misread amount is worse than a refused one
(a cost read a thousand times too large goes into every report), so an amount that reads two ways for its
currency is refused with both readings named, never guessed; see ``parse_amount`` for the rule.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ticketd.parsers.message import strip_bidi

# What agents write for a currency besides its ISO 4217 code, where the sign names exactly one currency. "$" and
# "£" name several (USD, CAD, AUD…; GBP, EGP…) and are refused with the codes to write instead.
CURRENCY_ALIASES: dict[str, str] = {"TL": "TRY", "₺": "TRY", "€": "EUR"}
AMBIGUOUS_SIGNS: dict[str, str] = {"$": "USD, CAD, AUD", "£": "GBP, EGP, LBP"}
# A line's amount stays below this (and so does a ticket's total per currency): at most 12 integer digits and a
# currency's 3 decimals are 15 significant digits, which a JSON number (a double) carries exactly.
AMOUNT_LIMIT = Decimal(10) ** 12
MAX_REASON = 500
MAX_MINUTES = 24 * 60  # one line: more than a day's work at once is a typo (2400m for 240m), never a fact

_SIGN = r"[A-Za-z]{2,3}|₺|€|\$|£"
_NUMBER = r"[-−]?\s*\d[\d.,\s]*"
_AMOUNT_FIRST = re.compile(rf"(?P<number>{_NUMBER}?)\s*(?P<currency>{_SIGN})")
_CURRENCY_FIRST = re.compile(rf"(?P<currency>{_SIGN})\s*(?P<number>{_NUMBER})")
_DIGITS_AND_SEPARATORS = re.compile(r"\d(?:[\d.,\s]*\d)?")
_FORMAT = "write it as an amount and an ISO 4217 currency code, e.g. Cost: 1.250,50 TRY; replacement modem"


class LedgerError(ValueError):
    """The sentence the agent reads."""


@dataclass(frozen=True)
class CostLine:
    amount: Decimal  # exact, with as many decimals as the currency's minor unit (1250.50 TRY, 300 JPY)
    currency: str  # ISO 4217, in use on the day it was written
    reason: str | None

    @property
    def text(self) -> str:
        """The line as stored in history: "1250.50 TRY; replacement modem"."""
        return f"{money_text(self.amount, self.currency)}" + (f"; {self.reason}" if self.reason else "")


def money_text(amount: Decimal, currency: str) -> str:
    """Locale-free, for history and the ``cost`` field: plain decimal point, no grouping ("1250.50 TRY")."""
    return f"{amount:f} {currency}"


def currencies_in_use(day: date) -> set[str]:
    """ISO 4217 codes that are legal tender somewhere on ``day`` (CLDR's territory data, through Babel): TRL,
    the lira before 2005, and XXX ("no currency") are codes, but no cost is paid in them today."""
    from babel.core import get_global  # Babel's data is loaded lazily: only a mail with a Cost: line pays for it
    from babel.numbers import get_territory_currencies

    found: set[str] = set()
    for territory in get_global("territory_currencies"):
        found.update(get_territory_currencies(territory, day, tender=True))
    return found


def parse_currency(written: str, day: date) -> str:
    from babel.numbers import is_currency

    if written in AMBIGUOUS_SIGNS:
        raise LedgerError(f"{written!r} names several currencies ({AMBIGUOUS_SIGNS[written]}…): write the ISO 4217 "
                          "code instead")
    code = CURRENCY_ALIASES.get(written.upper(), CURRENCY_ALIASES.get(written, written.upper()))
    in_use = currencies_in_use(day)
    if code in in_use:
        return code
    hint = difflib.get_close_matches(code, sorted(in_use), n=1, cutoff=0.6)
    why = "is not a currency in use today" if is_currency(code) else "is not an ISO 4217 currency code"
    raise LedgerError(f"{written!r} {why}" + (f"; did you mean {hint[0]}?" if hint else "")
                      + " (e.g. TRY, EUR, USD)")


def _babel_locale(decimal_mark: str | None, grouping: str | None) -> str:
    """The locale whose symbols match the reading: English groups with "," and marks decimals with ".",
    Turkish the other way round."""
    if decimal_mark == "," or (decimal_mark is None and grouping == "."):
        return "tr"
    return "en"


def _readings(digits: str) -> list[str | None]:
    """The decimal marks ``digits`` can be read with (None: a whole number, every separator groups thousands).

    - both "." and "," present: the last one is the decimal mark, the other groups (1.250,50 and 1,250.50);
    - one of them, more than once: it groups (1.250.000);
    - one of them once, with other than three digits after it: the decimal mark (12,5; 1250.50);
    - once with exactly three digits after it: either (1.250 is 1250 in Turkish and 1.25 in English) unless
      grouping is impossible: more than three digits before it, a leading 0, or spaces grouping already.
    """
    dots, commas = digits.count("."), digits.count(",")
    if dots and commas:
        return ["." if digits.rfind(".") > digits.rfind(",") else ","]
    if not dots and not commas:
        return [None]
    mark = "." if dots else ","
    if digits.count(mark) > 1:
        return [None]
    before, after = digits.split(mark)
    if len(after) != 3:
        return [mark]
    if " " in digits or len(before) > 3 or before.startswith("0"):
        return [mark]
    return [None, mark]


def _read(digits: str, mark: str | None) -> Decimal | None:
    """One reading, checked by Babel's strict parser (groups of three in the right places)."""
    from babel.numbers import NumberFormatError, parse_decimal

    grouping = {".": ",", ",": "."}[mark] if mark else ("." if "." in digits else ",")
    locale = _babel_locale(mark, grouping)
    try:
        return parse_decimal(digits.replace(" ", grouping), locale=locale, strict=True)
    except NumberFormatError:
        return None


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _places(n: int) -> str:
    return "no decimal places" if n == 0 else f"{n} decimal place" + ("s" if n > 1 else "")


def parse_amount(number: str, currency: str) -> Decimal:
    """``number`` as an exact amount of ``currency``.

    The rule for an amount that reads two ways (``1.250``, ``1,250``): an amount never has more decimals than its
    currency's minor unit (TRY and EUR 2, JPY none, KWD 3), so for most currencies only one reading is valid —
    ``1.250 TRY`` is 1250, since 1.250 lira would have three decimals — and the input is refused when both are
    (``1.250 KWD``: 1250 or 1.25 dinars). The helpdesk's language decides nothing: agents write in the notation of
    where they learnt to write numbers, not of the helpdesk.
    """
    from babel.numbers import get_currency_precision

    text = " ".join(number.replace("\u00a0", " ").replace("\u202f", " ").split())
    negative = text.startswith(("-", "−"))
    digits = text.lstrip("-−").strip()
    if not _DIGITS_AND_SEPARATORS.fullmatch(digits):
        raise LedgerError(f"{number.strip()!r} is not an amount; {_FORMAT}")
    places = get_currency_precision(currency)
    step = Decimal(1).scaleb(-places)
    readings = [value for mark in _readings(digits) if (value := _read(digits, mark)) is not None]
    if not readings:
        raise LedgerError(f"{digits!r} is not an amount: thousands are grouped by three "
                          "(1.250.000,50 or 1,250,000.50)")
    if any(value >= AMOUNT_LIMIT for value in readings):
        raise LedgerError(f"{digits} {currency} is too large for one cost line (under a million million)")
    if len(readings) == 1:
        amount = readings[0]
        if amount != amount.quantize(step):  # surplus decimals are allowed only as zeros (0,500 TRY)
            raise LedgerError(f"{digits} {currency}: {currency} has {_places(places)}, {digits} has "
                              f"{_decimals(amount)}")
    else:
        whole, part = readings  # grouped thousands, or a decimal mark with three decimals
        if _decimals(part) > places:  # 1.250 TRY: 1.250 lira would have three decimals, so it is 1250
            amount = whole
        else:
            raise LedgerError(f"{digits} {currency} is ambiguous: {whole:f} or {part:f}? Write {whole:f} "
                              f"{currency} for the first or {part:f}0 {currency} for the second")
    amount = amount.quantize(step)
    if amount == 0:
        raise LedgerError(f"{digits} {currency} is nothing: a cost line needs an amount")
    return -amount if negative else amount


def parse_cost(value: str, day: date) -> CostLine:
    """``1.250,50 TRY``, ``EUR 1,250.50``, ``300 TL; replacement modem``: an amount, its currency (before or
    after it), and after the first ``;`` the reason. A negative amount corrects an earlier line."""
    money, _, reason_text = " ".join(value.split()).partition(";")
    money = money.strip()
    match = _AMOUNT_FIRST.fullmatch(money) or _CURRENCY_FIRST.fullmatch(money)
    if not money or match is None:
        raise LedgerError(f"{money or value.strip()!r} is not an amount with its currency; {_FORMAT}")
    currency = parse_currency(match.group("currency"), day)
    amount = parse_amount(match.group("number"), currency)
    reason = strip_bidi(reason_text).strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise LedgerError(f"the reason is {len(reason)} characters long; at most {MAX_REASON}")
    return CostLine(amount, currency, reason)


_HOURS = r"h|hr|hrs|hour|hours|sa|saat"
_MINUTES = r"m|min|mins|minute|minutes|dk|dak|dakika"
_DURATION = re.compile(rf"(?:(?P<hours>\d+(?:[.,]\d+)?)\s*(?:{_HOURS}))?\s*(?:(?P<minutes>\d+)\s*(?:{_MINUTES}))?")
_CLOCK = re.compile(r"(?P<hours>\d+):(?P<minutes>[0-5]\d)")


def parse_minutes(value: str) -> int:
    """``30m``, ``1h30m``, ``2h``, ``90m``, ``1.5h``, ``1:30``, Turkish ``1sa 30dk``: whole minutes, at most a day
    per line; a negative duration corrects an earlier line. A bare number is refused: RT reads it as minutes,
    people as hours."""
    text = " ".join(value.split()).lower()
    negative = text.startswith(("-", "−"))
    body = text.lstrip("-−").strip()
    example = "write it as 30m, 1h30m or 2h"
    if re.fullmatch(r"\d+(?:[.,]\d+)?", body):
        raise LedgerError(f"{value.strip()!r} has no unit: {body}m or {body}h? {example}")
    clock, match = _CLOCK.fullmatch(body), _DURATION.fullmatch(body)
    if clock is not None:
        minutes = Decimal(int(clock["hours"]) * 60 + int(clock["minutes"]))
    elif match is not None and body and (match["hours"] or match["minutes"]):
        hours = Decimal(match["hours"].replace(",", ".")) if match["hours"] else Decimal(0)
        extra = int(match["minutes"]) if match["minutes"] else 0
        if match["hours"] and extra >= 60:
            raise LedgerError(f"{value.strip()!r}: minutes after hours stay under 60; {example}")
        minutes = hours * 60 + extra
    else:
        raise LedgerError(f"{value.strip()!r} is not a duration; {example}")
    if minutes != minutes.to_integral_value():
        raise LedgerError(f"{value.strip()!r} is not a whole number of minutes; {example}")
    if minutes == 0:
        raise LedgerError(f"{value.strip()!r} is no time: a time line needs a duration")
    if minutes > MAX_MINUTES:
        raise LedgerError(f"{value.strip()!r} is more than 24 hours in one line; split real work over "
                          "the days it took")
    return -int(minutes) if negative else int(minutes)


def minutes_text(minutes: int) -> str:
    """``90`` → ``1h30m``, for people; stored and sent as the number of minutes."""
    sign, minutes = ("-" if minutes < 0 else ""), abs(minutes)
    hours, rest = divmod(minutes, 60)
    return sign + (f"{hours}h" if hours else "") + (f"{rest}m" if rest or not hours else "")
