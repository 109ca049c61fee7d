"""Repeat rules: the RFC 5545 RRULE subset people use, plus rules counted from completion.

Accepted (keys in any order and case, an optional "RRULE:" prefix):

- FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, INTERVAL=n (every n days, weeks, ...);
- BYDAY=MO,TH (any FREQ but YEARLY; with an ordinal, -1FR or 2TU, for MONTHLY, or YEARLY with
  BYMONTH); BYMONTHDAY=1,-1 (MONTHLY, or YEARLY with BYMONTH); BYMONTH=1..12 (YEARLY);
- COUNT=n (this occurrence and n-1 more) or UNTIL=YYYYMMDD (the last date, inclusive);
- FROM=COMPLETION: the next occurrence is due INTERVAL units after the day it is done (with FREQ
  and INTERVAL only), instead of the next date the rule names after the current due date.

The arithmetic is python-dateutil's rrule: dates are those the rule names in the task's own time
zone, and a timed task keeps its local time of day across daylight-saving changes. A month without
the day a rule names (the 31st, February 29th) is skipped, as RFC 5545 says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Literal

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday

Freq = Literal["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]
FREQS: dict[str, Literal[0, 1, 2, 3, 4, 5, 6]] = {
    "DAILY": DAILY,
    "WEEKLY": WEEKLY,
    "MONTHLY": MONTHLY,
    "YEARLY": YEARLY,
}
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
UNITS = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year"}
EXAMPLES = (
    "FREQ=WEEKLY;BYDAY=MO,TH, FREQ=MONTHLY;BYDAY=-1FR (the last Friday), "
    "FREQ=MONTHLY;BYMONTHDAY=1, or FREQ=DAILY;INTERVAL=3;FROM=COMPLETION (3 days after it is done)"
)
_BYDAY = re.compile(r"^([+-]?[1-5])?(MO|TU|WE|TH|FR|SA|SU)$")


@dataclass(frozen=True)
class Repeat:
    """A parsed repeat rule."""

    freq: Freq
    interval: int = 1
    byday: tuple[tuple[int, int], ...] = ()  # (weekday 0=Monday, ordinal: 0 every, -1 last)
    bymonthday: tuple[int, ...] = ()
    bymonth: tuple[int, ...] = ()
    count: int | None = None
    until: date | None = None
    from_completion: bool = False

    def text(self) -> str:
        """The rule in canonical RRULE form."""
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.bymonth:
            parts.append("BYMONTH=" + ",".join(map(str, self.bymonth)))
        if self.bymonthday:
            parts.append("BYMONTHDAY=" + ",".join(map(str, self.bymonthday)))
        if self.byday:
            parts.append("BYDAY=" + ",".join(f"{n or ''}{DAYS[day]}" for day, n in self.byday))
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until:%Y%m%d}")
        if self.from_completion:
            parts.append("FROM=COMPLETION")
        return ";".join(parts)

    def spec(self) -> dict[str, Any]:
        """The rule as the database's next-date function reads it."""
        return {
            "freq": self.freq,
            "interval": self.interval,
            "byday": [list(pair) for pair in self.byday],
            "bymonthday": list(self.bymonthday),
            "bymonth": list(self.bymonth),
            "count": self.count,
            "until": self.until.isoformat() if self.until else None,
            "from_completion": self.from_completion,
        }

    def following(self) -> Repeat | None:
        """The rule the next occurrence carries (one fewer left of a COUNT); None after the last."""
        if self.count is None:
            return self
        return None if self.count <= 1 else replace(self, count=self.count - 1)

    def next_date(self, after: date, done: date) -> date | None:
        """The date of the occurrence after one due on `after` and done on `done`, or None if none.

        Counted from `after` (the rule's phase: every other week from that week), it is the first
        date the rule names after both days: a task done late is next due after the day it was done,
        not on a date already past.
        """
        if self.following() is None:
            return None
        if self.from_completion:
            found = done + relativedelta(**{UNITS[self.freq] + "s": self.interval})  # type: ignore[arg-type]
            return None if self.until is not None and found > self.until else found
        start = datetime.combine(after, time())
        until = datetime.combine(self.until, time()) if self.until else None
        following = self._rrule(start, until).after(datetime.combine(max(after, done), time()))
        return following.date() if following is not None else None

    def _rrule(self, start: datetime, until: datetime | None) -> rrule:
        weekdays = [weekday(day, n or None) for day, n in self.byday] or None
        return rrule(
            FREQS[self.freq],
            dtstart=start,
            interval=self.interval,
            byweekday=weekdays,
            bymonthday=list(self.bymonthday) or None,
            bymonth=list(self.bymonth) or None,
            until=until,
        )

    def summary(self) -> str:
        """A short description for people: "every 2 weeks on Mon, Thu", "monthly on the last Fri"."""
        unit = UNITS[self.freq]
        if self.from_completion:
            text = f"{self.interval} {unit}{'s' if self.interval != 1 else ''} after each completion"
        elif self.interval == 1:
            text = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}[unit] + self._on()
        else:
            text = f"every {self.interval} {unit}s{self._on()}"
        if self.count is not None:
            left = self.count - 1
            text += ", this time only" if left == 0 else f", {left} more time{'s' if left > 1 else ''}"
        if self.until is not None:
            text += f", until {self.until.isoformat()}"
        return text

    def _on(self) -> str:
        """Which days, in words (nothing when the due date decides)."""
        months = ", ".join(MONTH_NAMES[month - 1] for month in self.bymonth)
        if self.bymonthday and len(self.bymonth) == 1:
            return " on " + ", ".join(
                f"{months} {day}" if day > 0 else f"the {_day(day)} of {months}" for day in self.bymonthday
            )
        if self.byday and all(n == 0 for _, n in self.byday):
            weekdays = sorted(day for day, _ in self.byday) == [0, 1, 2, 3, 4]
            days = " on weekdays" if weekdays else " on " + ", ".join(DAY_NAMES[day] for day, _ in self.byday)
        elif self.byday:
            days = " on " + ", ".join(f"the {_ordinal(n)} {DAY_NAMES[day]}" for day, n in self.byday)
        elif self.bymonthday:
            days = " on the " + ", ".join(_day(day) for day in self.bymonthday)
        else:
            return f" in {months}" if months else ""
        return f"{days} of {months}" if months else days


def _day(n: int) -> str:
    return _ordinal(n) + (" day" if n < 0 else "")


def _ordinal(n: int) -> str:
    if n == -1:
        return "last"
    if n < 0:
        return f"{_ordinal(-n)} to last"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@lru_cache(maxsize=1024)
def summary_of(text: str) -> str:
    """The summary of a stored (valid) rule."""
    return parse_repeat(text).summary()


def parse_repeat(text: str) -> Repeat:
    """The rule `text` says; ValueError names what is wrong and shows rules that work."""
    try:
        return _parse(text)
    except ValueError as error:
        raise ValueError(
            f"is not a repeat rule this server reads ({error}); send a rule such as {EXAMPLES}"
        ) from None


def _fields(text: str) -> dict[str, str]:
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    fields: dict[str, str] = {}
    for part in filter(None, (piece.strip() for piece in body.split(";"))):
        key, equals, value = part.partition("=")
        key = key.strip().upper()
        if not equals or not value.strip():
            raise ValueError(f"{part!r} is not KEY=VALUE")
        if key in fields:
            raise ValueError(f"{key} is given twice")
        fields[key] = value.strip().upper()
    known = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "COUNT", "UNTIL", "FROM"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not supported (the keys are {', '.join(sorted(known))})")
    return fields


def _number(fields: dict[str, str], key: str, low: int, high: int) -> list[int]:
    values = []
    for item in fields.get(key, "").split(",") if key in fields else []:
        if not re.fullmatch(r"[+-]?\d+", item) or not low <= abs(int(item)) <= high or int(item) == 0:
            raise ValueError(f"{key}={fields[key]} must list numbers from {low} to {high}")
        values.append(int(item))
    return values


def _byday(value: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for item in value.split(","):
        found = _BYDAY.fullmatch(item.strip())
        if found is None:
            raise ValueError(f"BYDAY={value} must list days such as MO,TH or -1FR (the last Friday)")
        pairs.append((DAYS.index(found[2]), int(found[1] or 0)))
    return tuple(pairs)


def _until(value: str) -> date:
    digits = value.replace("-", "")[:8]
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"UNTIL={value} must be a date such as 20261231") from None


def _parse(text: str) -> Repeat:
    fields = _fields(text)
    freq = fields.get("FREQ")
    if freq not in FREQS:
        raise ValueError("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    (interval,) = _number(fields, "INTERVAL", 1, 1000) or [1]
    if interval < 0:
        raise ValueError("INTERVAL must be positive")
    rule = Repeat(
        freq=freq,  # type: ignore[arg-type]
        interval=interval,
        byday=_byday(fields["BYDAY"]) if "BYDAY" in fields else (),
        bymonthday=tuple(_number(fields, "BYMONTHDAY", 1, 31)),
        bymonth=tuple(_number(fields, "BYMONTH", 1, 12)),
        count=next(iter(_number(fields, "COUNT", 1, 1000)), None),
        until=_until(fields["UNTIL"]) if "UNTIL" in fields else None,
        from_completion=_from(fields.get("FROM")),
    )
    _check(rule)
    return rule


def _from(value: str | None) -> bool:
    if value not in (None, "DUE", "COMPLETION"):
        raise ValueError("FROM must be COMPLETION (counted from the day it is done) or DUE")
    return value == "COMPLETION"


def _check(rule: Repeat) -> None:
    """The combinations this server computes (the same as the database's next-date function)."""
    if any(n < 0 for n in rule.bymonth) or (rule.count is not None and rule.count < 0):
        raise ValueError("BYMONTH and COUNT must be positive")
    if rule.count is not None and rule.until is not None:
        raise ValueError("give COUNT or UNTIL, not both")
    if rule.from_completion and (rule.byday or rule.bymonthday or rule.bymonth):
        raise ValueError("FROM=COMPLETION takes FREQ and INTERVAL only (no BYDAY, BYMONTHDAY, BYMONTH)")
    if rule.bymonth and rule.freq != "YEARLY":
        raise ValueError("BYMONTH goes with FREQ=YEARLY")
    if rule.freq == "YEARLY" and (rule.byday or rule.bymonthday) and not rule.bymonth:
        raise ValueError("with FREQ=YEARLY, BYDAY and BYMONTHDAY need BYMONTH (or use FREQ=MONTHLY)")
    if rule.bymonthday and rule.freq in ("DAILY", "WEEKLY"):
        raise ValueError("BYMONTHDAY goes with FREQ=MONTHLY or YEARLY")
    if any(n != 0 for _, n in rule.byday) and rule.freq in ("DAILY", "WEEKLY"):
        raise ValueError("a numbered BYDAY (such as -1FR) goes with FREQ=MONTHLY or YEARLY")
