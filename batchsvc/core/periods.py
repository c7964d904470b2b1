"""Periods and `_range`: dates, partial dates and tenors read as half-open spans of instants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from batchsvc.core import calendars
from batchsvc.core.errors import InvalidInput

# Named in every error a `_range` can get, and in the OpenAPI description of the parameter.
RANGE_FORMS = (
    "last(n), from(d[,tz]), between(d1,d2[,tz]), within(d[,tz]) or a bare d, where d is an ISO date or "
    "date-time, a partial one standing for its whole period (2024, 2024-12, 2024-12-05, 2024-12-05T10) "
    "or an absolute tenor (2024Y, 2024H1, 2024Q1, 2024M10, 2024W05), and tz an IANA time zone"
)
MAX_LAST = 1_000_000
_CALL = re.compile(r"^(last|from|between|within)\((.*)\)$", re.DOTALL)
# A date or date-time cut at any precision from the year down; an offset only after a time.
_PARTIAL = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$",
    re.IGNORECASE,
)
_TENOR = re.compile(r"^(?P<year>\d{4})(?:(?P<unit>[HQMW])(?P<number>\d{1,2})|(?P<whole>Y))$", re.IGNORECASE)
_UNITS = {"H": (2, 6), "Q": (4, 3), "M": (12, 1)}  # unit -> (periods a year, months each)


@dataclass(frozen=True)
class Span:
    """Instants (UTC) in [start, end); either bound may be open. Or only the newest `last` items."""

    start: datetime | None = None
    end: datetime | None = None
    last: int | None = None

    def dates(self, zone: tzinfo) -> tuple[date | None, date | None]:
        """The calendar days whose midnight in `zone` falls in the span, as [first, stop)."""
        return _first_day_from(self.start, zone), _first_day_from(self.end, zone)


def _first_day_from(moment: datetime | None, zone: tzinfo) -> date | None:
    """The first day whose midnight in `zone` is at or after `moment`."""
    if moment is None:
        return None
    day = moment.astimezone(zone).date()
    return day if _midnight(day, zone) >= moment else day + timedelta(days=1)


def _midnight(day: date, zone: tzinfo) -> datetime:
    """The day's first instant in `zone`, in UTC (aware datetimes sharing a zone compare and
    subtract by wall clock; in UTC they do by elapsed time)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def zone_named(name: str) -> tzinfo:
    """An IANA time zone for a `_range` (the same lookup as a series' `timezone`); InvalidInput
    when there is none of that name."""
    try:
        return calendars.zone_named(name or "")
    except calendars.CalendarError:
        raise InvalidInput(
            f"_range: {name[:64]!r} is not an IANA time zone (e.g. Europe/London); expected {RANGE_FORMS}"
        ) from None


def series_zone(header: dict) -> tzinfo:
    """The zone partial dates are read in for a series or curve: its `timezone`, else UTC."""
    name = header.get("timezone")
    if isinstance(name, str):
        try:
            return zone_named(name)
        except InvalidInput:
            pass  # a stored zone we cannot read: its instants are UTC anyway
    return UTC


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


def _local_period(year: int, month: int, day: int, months: int, days: int, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a calendar period (months or days long) starting on a date, in `zone`."""
    start = date(year, month, day)
    if months:
        end_year, end_month = _add_months(year, month, months)
        end = date(end_year, end_month, 1)
    else:
        end = start + timedelta(days=days)
    return _midnight(start, zone), _midnight(end, zone)


def _offset(text: str) -> tzinfo:
    if text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _partial(match: re.Match, zone: tzinfo) -> tuple[datetime, datetime]:
    parts = match.groupdict()
    year = int(parts["year"])
    if parts["month"] is None:
        return _local_period(year, 1, 1, 12, 0, zone)
    if parts["day"] is None:
        return _local_period(year, int(parts["month"]), 1, 1, 0, zone)
    if parts["hour"] is None:
        return _local_period(year, int(parts["month"]), int(parts["day"]), 0, 1, zone)
    if parts["offset"]:
        zone = _offset(parts["offset"])  # an explicit offset wins over the tz argument
    fraction = parts["fraction"]
    precision = (
        timedelta(microseconds=1)
        if fraction
        else timedelta(seconds=1)
        if parts["second"]
        else timedelta(minutes=1)
        if parts["minute"]
        else timedelta(hours=1)
    )
    local = datetime(
        year,
        int(parts["month"]),
        int(parts["day"]),
        int(parts["hour"]),
        int(parts["minute"] or 0),
        int(parts["second"] or 0),
        int((fraction or "0").ljust(6, "0")[:6]),
        tzinfo=zone,
    )
    # Under a day, a period is a length of time: the hour 01:00 of a DST change is one hour long.
    start = local.astimezone(UTC)
    return start, start + precision


def _tenor(match: re.Match, zone: tzinfo) -> tuple[datetime, datetime]:
    year = int(match["year"])
    if match["whole"]:
        return _local_period(year, 1, 1, 12, 0, zone)
    unit, number = match["unit"].upper(), int(match["number"])
    if unit == "W":
        monday = date.fromisocalendar(year, number, 1)  # ValueError for a week the year lacks
        return _local_period(monday.year, monday.month, monday.day, 0, 7, zone)
    count, months = _UNITS[unit]
    if not 1 <= number <= count:
        raise ValueError(match.string)
    return _local_period(year, (number - 1) * months + 1, 1, months, 0, zone)


def period(text: str, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The [start, end) instants a date, partial date, date-time or absolute tenor stands for.

    Dates and times without an offset are read in `zone`. Raises InvalidInput naming the forms."""
    text = text.strip()
    try:
        match = _PARTIAL.match(text)
        if match:
            return _partial(match, zone)
        match = _TENOR.match(text)
        if match:
            return _tenor(match, zone)
    except ValueError:  # a month 13, a day 31 of a 30-day month, a week 53 a year lacks, …
        pass
    raise InvalidInput(f"_range: {text[:40]!r} is not a date, date-time or tenor; expected {RANGE_FORMS}")


def parse_range(raw: str | None, zone: tzinfo = UTC) -> Span:
    """A `_range` as a Span; partial dates read in the range's tz, else `zone`. 400 naming the forms."""
    if raw is None:
        return Span()
    text = raw.strip()
    match = _CALL.match(text)
    if not match:
        if not text or "(" in text or "," in text:
            raise InvalidInput(f"_range {raw[:60]!r} cannot be read; expected {RANGE_FORMS}")
        start, end = period(text, zone)
        return Span(start, end)
    kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
    if kind == "last":
        if len(args) != 1 or not re.fullmatch(r"\d{1,7}", args[0]) or not 1 <= int(args[0]) <= MAX_LAST:
            raise InvalidInput(f"_range last(n) needs a whole number n from 1 to {MAX_LAST}; expected {RANGE_FORMS}")
        return Span(last=int(args[0]))
    dates = 2 if kind == "between" else 1
    if len(args) not in (dates, dates + 1) or not all(args):
        usage = "between(d1,d2[,tz])" if kind == "between" else f"{kind}(d[,tz])"
        raise InvalidInput(
            f"_range {usage} takes {dates} date{'s' if dates > 1 else ''} and an optional "
            f"time zone; expected {RANGE_FORMS}"
        )
    if len(args) > dates:
        zone = zone_named(args[-1])
    first = period(args[0], zone)
    if kind == "from":
        return Span(start=first[0])
    if kind == "within":
        return Span(*first)
    last = period(args[1], zone)
    if last[1] <= first[0]:
        raise InvalidInput(f"_range between(d1,d2): {args[1][:40]!r} ends before {args[0][:40]!r} starts")
    return Span(first[0], last[1])
