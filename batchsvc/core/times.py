"""ISO-8601 instants as the API reads them: one parser for bodies, filters and ranges."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=16_384)
def parse_instant(text: str) -> datetime:
    """An aware datetime from an ISO-8601 date or date-time ('Z' or an offset; naive = UTC).

    Raises ValueError when `text` is not one; callers say where it came from. Remembered: a
    series batch names the same instants once for each of its series (a day of 5-minute
    prices for 100 objects parses 288 texts, not 28,800)."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, the platform's timestamp form."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
