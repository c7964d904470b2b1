"""Series calendars and time zones (SPEC §6): which times a calendar holds, and its times from a start."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batchsvc.core.times import localize

SPARSE = "SPARSE"
REGULAR_CALENDARS = "DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D"
_DAY = timedelta(days=1)
_DAY_SECONDS = 86_400
_MIDNIGHT = time()
_DURATION = re.compile(r"^P(?:(\d{1,3})D)?(?:T(?=\d)(?:(\d{1,3})H)?(?:(\d{1,5})M)?(?:(\d{1,6})S)?)?$")
_MAX_ZONE_NAME = 64
_WEEKDAYS = frozenset(range(7))
_MONDAY_TO_FRIDAY = frozenset(range(5))


class CalendarError(ValueError):
    """A calendar or time zone cannot be used; the message says why."""


def zone_named(name) -> tzinfo:
    """The IANA zone a series' `timezone` names (UTC when it has none)."""
    if name is None:
        return UTC
    if not isinstance(name, str) or not name or len(name) > _MAX_ZONE_NAME:
        raise CalendarError("timezone must be an IANA time zone name such as Europe/London")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(f"unknown time zone {name!r}") from None


def day_start(day: date, zone: tzinfo) -> datetime:
    """The first instant of a local day: its midnight (moved on by the gap where DST skips midnight)."""
    return localize(datetime.combine(day, time()), zone)


@dataclass(frozen=True)
class Calendar:
    """A series calendar: `SPARSE` (any time), whole local days (`DAILY`, `P1D`, `BUSINESS`),
    or a grid of local clock times every `step` from midnight (`PT5M`, `PT1H`, …)."""

    name: str
    weekdays: frozenset[int] = _WEEKDAYS  # the days a day-based calendar holds (0 = Monday)
    step: timedelta | None = None  # sub-day calendars only

    @property
    def regular(self) -> bool:
        return self.name != SPARSE

    def aligned(self, moment: datetime, zone: tzinfo) -> bool:
        """Whether the aware `moment` is one of the calendar's times in `zone`."""
        if not self.regular:
            return True
        local = moment.astimezone(zone)
        if self.step is None:
            if local.weekday() not in self.weekdays:
                return False
            if local.fold == 0 and local.time() == _MIDNIGHT:
                return True  # the common case: a local midnight, and not the second of a repeated one
            # where DST skips midnight the day starts later; compared as UTC instants (two datetimes
            # of one zone compare by clock time, blind to fold)
            return moment.astimezone(UTC) == day_start(local.date(), zone).astimezone(UTC)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return local.microsecond == 0 and seconds % int(self.step.total_seconds()) == 0

    def times_from(self, start: datetime, zone: tzinfo) -> Iterator[datetime]:
        """The calendar's times from the aware `start` on (start itself when it is one), in `zone`.

        Raises OverflowError past the year 9999."""
        if not self.regular:
            raise CalendarError(f"positional values need a regular calendar ({REGULAR_CALENDARS})")
        start = start.astimezone(UTC)
        day = start.astimezone(zone).date()
        if self.step is None:
            while True:
                if day.weekday() in self.weekdays:
                    moment = day_start(day, zone)
                    if moment >= start and moment.date() == day:  # a day the zone skips whole is not on it
                        yield moment
                day += _DAY
        while True:
            for moment in self._day_grid(day, zone):
                if moment >= start:
                    yield moment.astimezone(zone)
            day += _DAY

    def _day_grid(self, day: date, zone: tzinfo) -> list[datetime]:
        """One local day's clock times every `step` from midnight, as UTC instants in order.

        A day without an offset change is plain arithmetic; on the day the clocks change, a
        skipped clock time is not on the calendar and a repeated one is on it twice."""
        step = self.step
        count = _DAY_SECONDS // int(step.total_seconds())
        first = day_start(day, zone).astimezone(UTC)  # UTC: same-zone arithmetic would be clock arithmetic
        following = day_start(day + _DAY, zone).astimezone(UTC) if day < date.max else None
        if following is not None and following - first == _DAY and first.astimezone(zone).time() == time():
            return [first + k * step for k in range(count)]
        instants = set()
        midnight = datetime.combine(day, time())
        for k in range(count):
            wall = midnight + k * step
            for fold in (0, 1):
                instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if instant.astimezone(zone).replace(tzinfo=None) == wall:  # skipped clock times fail this
                    instants.add(instant)
        return sorted(instants)


_NAMED = {
    "DAILY": Calendar("DAILY"),
    "BUSINESS": Calendar("BUSINESS", weekdays=_MONDAY_TO_FRIDAY),
    SPARSE: Calendar(SPARSE),
}


def calendar_named(name) -> Calendar:
    """The calendar a series' `calendar` names (case-insensitive; SPARSE when it has none)."""
    if name is None:
        return _NAMED[SPARSE]
    if not isinstance(name, str):
        raise CalendarError(f"calendar must be a string: SPARSE, {REGULAR_CALENDARS}")
    key = name.strip().upper()
    if key in _NAMED:
        return _NAMED[key]
    match = _DURATION.match(key)
    if match is None or key == "P":
        raise CalendarError(f"unknown calendar {name[:40]!r} (SPARSE, {REGULAR_CALENDARS})")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if days:
        if days == 1 and not (hours or minutes or seconds):
            return Calendar(key)
        raise CalendarError(f"calendar {key} is not supported: day durations are P1D only")
    step = hours * 3600 + minutes * 60 + seconds
    if step == 0 or _DAY_SECONDS % step:
        raise CalendarError(f"calendar {key} is not supported: a time duration must divide a day (PT5M, PT1H, …)")
    return Calendar(key, step=timedelta(seconds=step))
