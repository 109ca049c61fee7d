"""Due values: a calendar date, or an instant with the offset or IANA zone it was given in.

Accepted forms: "2026-12-24", "2026-12-24T17:00:00+01:00", and "2026-12-24T17:00[Europe/Paris]"
(optionally with the offset too, which picks the instant in an hour that happens twice). A value
is given back exactly as it was stored, offset and zone included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Any offset keeps a due value in this range inside datetime's range (and before the sort
# position of tasks without a due value).
DUE_FIRST, DUE_LAST = date(1000, 1, 1), date(9998, 12, 31)
DUE_FORMATS = (
    "a date 2026-12-24, a date-time with offset 2026-12-24T17:00:00+01:00, "
    "or one with a zone 2026-12-24T17:00[Europe/Paris]"
)

_DUE_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<offset>Z|[+-]\d{2}:?\d{2})?"
    r"(?:\[(?P<zone>[A-Za-z0-9_+\-/]+)\])?)?$"
)


def zone_info(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError names the zone and what to send instead."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


@dataclass(frozen=True)
class Due:
    """A parsed due value: a calendar date, or an instant with the offset or zone it was given in."""

    day: date
    at: datetime | None = None  # None for an all-day (date-only) due value
    tz: str | None = None  # "+01:00", "Z" or an IANA zone name

    @property
    def sort_key(self) -> datetime:
        """The UTC instant this value sorts at; a date-only value sorts at the end of its day."""
        if self.at is not None:
            return self.at.astimezone(UTC)
        return datetime.combine(self.day, time(23, 59, 59), tzinfo=UTC)

    def text(self) -> str:
        """The canonical text of this value."""
        return format_due(self.day, self.at, self.tz) or ""


def parse_due(text: str) -> Due:
    """Parse a due value; ValueError says what is wrong and which forms are accepted."""
    match = _DUE_RE.match(text.strip())
    if match is None:
        raise ValueError(f"due {text!r} is not understood; send {DUE_FORMATS}")
    try:
        day = date.fromisoformat(match["date"])
    except ValueError:
        raise ValueError(f"due {text!r} is not a real calendar date; send {DUE_FORMATS}") from None
    if not DUE_FIRST <= day <= DUE_LAST:
        raise ValueError(f"due {text!r} is out of range; send a date from {DUE_FIRST} to {DUE_LAST}")
    if match["time"] is None:
        return Due(day=day)
    try:
        clock = time.fromisoformat(match["time"])
    except ValueError:
        raise ValueError(f"due {text!r} is not a real time of day; send {DUE_FORMATS}") from None
    naive = datetime.combine(day, clock)
    if match["zone"] is not None:
        return _in_zone(text, naive, match["zone"], match["offset"])
    if match["offset"] is None:
        raise ValueError(
            f"due {text!r} has a time but no offset or zone; send {text.strip()}+01:00 (your offset), "
            f"{text.strip()}[Europe/Paris] (your zone), or just the date {day.isoformat()}"
        )
    offset = _offset(match["offset"])
    canonical = "Z" if match["offset"] == "Z" else _format_offset(offset)
    return Due(day=day, at=naive.replace(tzinfo=timezone(offset)), tz=canonical)


def _in_zone(text: str, naive: datetime, zone_name: str, offset_text: str | None) -> Due:
    """A local time in an IANA zone; the offset, when given, picks one of a repeated hour."""
    zone = zone_info(zone_name)
    local = naive.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError(
            f"due {text!r}: {naive.time().isoformat()} does not exist in {zone_name} on "
            f"{naive.date().isoformat()} (the clocks skip it); send a time outside the gap"
        )
    if offset_text is not None:
        given = _offset(offset_text)
        if local.utcoffset() != given:
            other = local.replace(fold=1)  # the second of a repeated hour (autumn clock change)
            if other.utcoffset() != given:
                raise ValueError(
                    f"due {text!r}: offset {offset_text} does not match {zone_name} at that time; "
                    "drop the offset or fix it"
                )
            local = other
    return Due(day=naive.date(), at=local, tz=zone_name)


def _offset(text: str) -> timedelta:
    if text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text} is out of range; offsets run from -23:59 to +23:59")
    return sign * timedelta(hours=hours, minutes=minutes)


def _format_offset(offset: timedelta) -> str:
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def format_due(day: date | None, at: datetime | None, tz: str | None) -> str | None:
    """The text of a stored due value (None when there is none)."""
    if day is None:
        return None
    if at is None:
        return day.isoformat()
    if tz is None or tz == "Z":
        return at.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    if tz[0] in "+-":
        return at.astimezone(timezone(_offset(tz))).isoformat()
    return f"{at.astimezone(zone_info(tz)).isoformat()}[{tz}]"
