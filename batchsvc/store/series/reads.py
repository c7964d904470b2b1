"""Series reads: the points of one series within a range, the newest n, or as of an instant."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, date, datetime, timedelta

import orjson

from batchsvc.core.times import micros
from batchsvc.store.series.codec import DAY_US, EPOCH_ORDINAL, _observation, observations, span_start
from batchsvc.store.series.writes import _TENANT_KEY, Stored, _as_json, _numbers
from batchsvc.store.stamps import batches_of

READ_SERIES = f"""
SELECT s.tenant_key, s.id, s.span FROM series s
WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.object_id = %(object_id)s
  AND s.property = %(prop)s
"""
_CHUNKS = """
SELECT day, times, vals, codes, extras::text FROM series_chunks
WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
"""
READ_CHUNKS = _CHUNKS + "ORDER BY day"
READ_NEWEST = _CHUNKS + "ORDER BY day DESC LIMIT %(limit)s"
# As of an instant: of the chunks (days) in range that hold points now or held some then (the
# newest `limit` of them, all with NULL), the current chunk and the archived points superseded
# after the instant. Which of those were current at the instant, their stamps tell.
READ_ASOF = f"""
WITH days AS (
    SELECT day FROM series_chunks
    WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
    UNION
    SELECT day FROM series_versions
    WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
      AND superseded_at > %(asof)s
    ORDER BY day DESC LIMIT %(limit)s
)
SELECT c.day, NULL::int8, {_as_json("c")}, c.codes, c.stamps, c.extras::text
FROM days JOIN series_chunks c ON c.tenant_key = %(tenant_key)s AND c.series_id = %(series_id)s AND c.day = days.day
UNION ALL
SELECT v.day, v.superseded, {_as_json("v")}, v.codes, v.stamps, v.extras::text
FROM days JOIN series_versions v
  ON v.tenant_key = %(tenant_key)s AND v.series_id = %(series_id)s AND v.day = days.day AND v.superseded_at > %(asof)s
"""


def _as_date(day: int) -> date:
    return date.fromordinal(max(1, min(day + EPOCH_ORDINAL, date.max.toordinal())))


def read_points(
    connection,
    scope: dict,
    object_id: str,
    prop: str,
    *,
    start: datetime | None,
    end: datetime | None,
    last: int | None,
    asof: datetime | None = None,
) -> list[dict]:
    """Observations in time order within [start, end), or only the newest `last` of them; as
    the store knew them at instant `asof` when given (points written later absent, corrected
    ones with their old values, removed ones there).

    `connection` is a DB-API connection. Only the chunks overlapping the range are read;
    `last(n)` reads chunks newest first until it has n points."""
    with connection.cursor() as cur:
        cur.execute(READ_SERIES, {**scope, "object_id": object_id, "prop": prop})
        row = cur.fetchone()
        if row is None:
            return []
        tenant_key, series_id, span = row
        lo_us = None if start is None else micros(start)
        hi_us = None if end is None else micros(end) - 1  # times are whole microseconds: < end is <= end - 1 µs
        params = {
            "tenant_key": tenant_key,
            "series_id": series_id,
            "first": date.min if lo_us is None else _as_date(span_start(span, lo_us // DAY_US)[0]),
            "last": date.max if hi_us is None else _as_date(span_start(span, hi_us // DAY_US)[0]),
        }
        if params["first"] > params["last"]:
            return []
        if asof is not None:
            return _as_of(cur, scope, {**params, "asof": asof}, lo_us, hi_us, last)
        if last:
            return _newest(cur, params, lo_us, hi_us, last)
        cur.execute(READ_CHUNKS, params)
        out = []
        for _day, times, vals, codes, extras in cur.fetchall():
            lo = 0 if lo_us is None else bisect_left(times, lo_us)
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            if lo < hi:
                out.extend(observations(times, vals, codes, extras, lo, hi))
        return out


def _newest(cur, params: dict, lo_us: int | None, hi_us: int | None, wanted: int) -> list[dict]:
    """The newest `wanted` points within [lo_us, hi_us], reading chunks newest first, a few at a time."""
    pieces, limit = [], 2
    while wanted > 0:
        cur.execute(READ_NEWEST, {**params, "limit": limit})
        rows = cur.fetchall()
        for day, times, vals, codes, extras in rows:
            if wanted <= 0:
                break
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            lo = max(0 if lo_us is None else bisect_left(times, lo_us), hi - wanted)
            if lo < hi:
                pieces.append(observations(times, vals, codes, extras, lo, hi))
                wanted -= hi - lo
            params["last"] = day - timedelta(days=1) if day > date.min else None
        if len(rows) < limit or params["last"] is None or params["last"] < params["first"]:
            break
        limit *= 4
    return [point for piece in reversed(pieces) for point in piece]


_BEFORE_ANY = datetime.min.replace(tzinfo=UTC)


class _Then:
    """When each stamp's state became current: its batch's time (stamp 0, and stamps whose
    record was pruned, before any instant), learned a round trip at a time."""

    def __init__(self, cur, scope: dict, asof: datetime):
        self.cur, self.scope, self.asof = cur, scope, asof
        self.at: dict[int, datetime] = {}

    def learn(self, rows: list[tuple]) -> None:
        wanted = {stamp for row in rows for stamp in row[5]} - self.at.keys()
        known = batches_of(self.cur, self.scope, wanted)
        for stamp in wanted:
            self.at[stamp] = known[stamp][1] if stamp in known else _BEFORE_ANY

    def visible(self, rows: list[tuple], lo_us: int | None, hi_us: int | None) -> list[dict]:
        """The observations within [lo_us, hi_us] of one chunk's rows (current and archived) that
        were current at the instant: made by then and (archived ones) superseded after. Should two
        qualify (clocks disagreeing), the one made latest."""
        if len(rows) == 1 and rows[0][1] is None and len(rows[0][5]) == 1:  # a current chunk of one batch
            _, _, times, vals, codes, stamps, extras = rows[0]
            if self.at[stamps[0]] > self.asof:
                return []
            times, vals = orjson.loads(times), [float(v) if type(v) is int else v for v in _numbers(vals)]
            lo = 0 if lo_us is None else bisect_left(times, lo_us)
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            return observations(times, vals, codes, extras, lo, hi) if lo < hi else []
        best: dict[int, tuple] = {}
        for _, _, times, vals, codes, stamps, extras in rows:
            for t, value, code, made, extra in Stored.of(times, vals, codes, stamps, extras).points():
                if (lo_us is not None and t < lo_us) or (hi_us is not None and t > hi_us):
                    continue
                when = (self.at[made], made)
                if when[0] <= self.asof:
                    held = best.get(t)
                    if held is None or when > held[0]:
                        best[t] = (when, (t, value, code, extra))
        return [_observation(*best[t][1]) for t in sorted(best)]


def _as_of(cur, scope: dict, params: dict, lo_us: int | None, hi_us: int | None, last: int | None) -> list[dict]:
    """Observations as of params["asof"]: every chunk in range (or, for `last`, the newest days a
    few at a time) with its archived points superseded after the instant."""
    then = _Then(cur, scope, params["asof"])
    out: list[list[dict]] = []
    wanted, limit = last or 0, 2 if last else None
    while True:
        cur.execute(READ_ASOF, {**params, "limit": limit})
        rows = cur.fetchall()
        then.learn(rows)
        by_day: dict[date, list[tuple]] = {}
        for row in rows:
            by_day.setdefault(row[0], []).append(row)
        for day in sorted(by_day, reverse=bool(last)):
            points = then.visible(by_day[day], lo_us, hi_us)
            if last:
                points = points[-wanted:]
                wanted -= len(points)
                params["last"] = day - timedelta(days=1) if day > date.min else None
            out.append(points)
            if last and wanted <= 0:
                break
        if not last or wanted <= 0 or len(by_day) < limit or params["last"] is None:
            break
        if params["last"] < params["first"]:
            break
        limit *= 4
    if last:
        out.reverse()
    return [point for piece in out for point in piece]
