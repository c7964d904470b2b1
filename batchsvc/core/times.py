"""ISO-8601 instants as the API reads them: one parser for bodies, filters and ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache


@lru_cache(maxsize=16_384)
def parse_instant(text: str, zone: tzinfo = UTC) -> datetime:
    """An aware datetime from an ISO-8601 date or date-time ('Z' or an offset; naive = a clock
    time in `zone`, UTC unless told).

    Raises ValueError when `text` is not one; callers say where it came from. Remembered: a
    series batch names the same instants once for each of its series (a day of 5-minute
    prices for 100 objects parses 288 texts, not 28,800)."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo:
        return moment
    return moment.replace(tzinfo=UTC) if zone is UTC else localize(moment, zone)


def localize(naive: datetime, zone: tzinfo) -> datetime:
    """A clock time in `zone`, resolved the way java.time does: a time repeated when the clocks
    go back is the earlier one; a time skipped when they go forward moves on by the gap."""
    # through UTC: astimezone() to a datetime's own zone would leave a skipped clock time as it is
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, the platform's timestamp form."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """An instant as whole microseconds since 1970-01-01 UTC (how observations are keyed in the store)."""
    return (moment - EPOCH) // _MICROSECOND
