"""Typed data inside objects: series, curves, matrices and events, split from the document into rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from itertools import islice

from batchsvc.core.calendars import REGULAR_CALENDARS, Calendar, CalendarError, calendar_named, zone_named
from batchsvc.core.identity import MAX_ID_LENGTH
from batchsvc.core.times import parse_instant

SERIES_TYPES = frozenset({"VarTimeSeries", "VarEventTimeSeries", "VarSmartTimeSeries"})
CURVE_TYPES = frozenset({"VarCurve", "VarEventCurve", "VarSmartCurve"})
MATRIX_TYPE = "VarMatrix"
EVENT_TYPE = "VarEvent"
EVENT_LIST_TYPE = "VarEventList"
DATA_TYPES = SERIES_TYPES | CURVE_TYPES | {MATRIX_TYPE, EVENT_LIST_TYPE}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BULK_KEYS = {"data", "contracts", "ondate", "_merge", "_replace", "rows", "columns", "values", "matrix"}
_CONTAINERS = frozenset({dict, list})  # the types orjson parses objects and arrays into


class InvalidData(ValueError):
    """A data property cannot be stored; the message names the property and the problem."""


def parse_time(value, what: str) -> tuple[datetime, str]:
    """An event time: (UTC instant, its calendar date as written)."""
    if not isinstance(value, str) or not value:
        raise InvalidData(f"{what} must be an ISO-8601 date or date-time string")
    try:
        moment = parse_instant(value)
    except ValueError:
        raise InvalidData(f"{what} {value[:40]!r} is not an ISO-8601 date or date-time") from None
    try:
        return moment.astimezone(UTC), moment.date().isoformat()
    except OverflowError:  # e.g. 0001-01-01T00:30+01:00, before the first UTC instant
        raise InvalidData(f"{what} {value[:40]!r} is outside the years 1 to 9999 in UTC") from None


def parse_date(value, what: str) -> date:
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10]) if _DATE.match(value[:10]) else date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidData(f"{what} must be a date YYYY-MM-DD")


def is_data_header(value) -> bool:
    return isinstance(value, dict) and value.get("_type") in DATA_TYPES


@dataclass
class DataWrites:
    """The data rows one object receives from a batch, keyed so later elements win."""

    points: dict[tuple[str, datetime], dict] = field(default_factory=dict)  # (prop, instant) -> observation
    curves: dict[tuple[str, date], tuple[dict, bool]] = field(default_factory=dict)  # (prop, day) -> (curve, merge)
    matrices: dict[tuple[str, date], dict] = field(default_factory=dict)  # (prop, day) -> matrix
    events: dict[tuple[str, str], tuple[datetime, dict]] = field(default_factory=dict)  # (prop, id) -> (instant, event)
    wipe_props: set[str] = field(default_factory=set)  # series replaced whole
    dates: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, YYYY-MM-DD, prop) for the summary

    def __bool__(self) -> bool:
        return bool(self.points or self.curves or self.matrices or self.events or self.wipe_props)

    def update(self, later: DataWrites) -> None:
        """Fold a later element's data over this one (same object, same batch)."""
        for prop in later.wipe_props:
            self.points = {k: v for k, v in self.points.items() if k[0] != prop}
        self.wipe_props |= later.wipe_props
        self.points.update(later.points)
        for key, (curve, merge) in later.curves.items():
            if merge and key in self.curves:
                earlier, earlier_merge = self.curves[key]
                self.curves[key] = (merge_contracts(earlier, curve), earlier_merge)
            else:
                self.curves[key] = (curve, merge)
        self.matrices.update(later.matrices)
        self.events.update(later.events)
        self.dates.extend(later.dates)


def merge_contracts(stored: dict, incoming: dict) -> dict:
    """Curve `_merge`: contracts merge by tenor, incoming ones win, stored order kept."""
    by_tenor = {}
    for contract in stored.get("contracts") or []:
        by_tenor[contract.get("tenor") if isinstance(contract, dict) else None] = contract
    for contract in incoming.get("contracts") or []:
        by_tenor[contract.get("tenor") if isinstance(contract, dict) else None] = contract
    return {**stored, **incoming, "contracts": list(by_tenor.values())}


def _header(value: dict) -> dict:
    return {k: v for k, v in value.items() if k not in _BULK_KEYS}


def _series_time(value, zone: tzinfo, what: str) -> datetime:
    """An observation time or a start: aware, naive times read in the series' zone."""
    if not isinstance(value, str) or not value:
        raise InvalidData(f"{what} must be an ISO-8601 date or date-time string")
    try:
        return parse_instant(value, zone)
    except ValueError:
        raise InvalidData(f"{what} {value[:40]!r} is not an ISO-8601 date or date-time") from None


class _Positions:
    """The times of a positional series: data[n] without its own time is at the n-th calendar time
    from `start` (start itself when it is on the calendar, else the first calendar time after it)."""

    def __init__(self, where: str, value: dict, calendar: Calendar, zone: tzinfo):
        self.where, self.value, self.calendar, self.zone = where, value, calendar, zone
        self._times: Iterator[datetime] | None = None
        self._taken = 0  # calendar times consumed so far

    def at(self, index: int) -> datetime:
        if self._times is None:
            self._times = self._start(index)
        skip, self._taken = index - self._taken, index + 1
        return next(self._times) if skip == 0 else next(islice(self._times, skip, None))

    def _start(self, index: int) -> Iterator[datetime]:
        lacks = f"{self.where}: observation #{index} has no time"
        if not self.calendar.regular:
            has = "no calendar" if self.value.get("calendar") is None else "calendar SPARSE"
            raise InvalidData(
                f"{lacks}; values without a time need a regular calendar ({REGULAR_CALENDARS}), this series has {has}"
            )
        if self.value.get("start") is None:
            raise InvalidData(f"{lacks}; values without a time need the series' start")
        start = _series_time(self.value["start"], self.zone, f"{self.where}: start")
        return self.calendar.times_from(start, self.zone)


def _series(prop: str, value: dict, data: DataWrites) -> dict:
    """Observations `{time, value, …}` as sent, or positional values on the series' calendar (spec §6)."""
    where = f"property {prop!r}"
    observations = value.get("data", [])
    if not isinstance(observations, list):
        raise InvalidData(f"{where}: data must be an array of observations")
    try:
        zone = zone_named(value.get("timezone"))
        calendar = calendar_named(value.get("calendar"))
    except CalendarError as exc:
        raise InvalidData(f"{where}: {exc}") from None
    replace = value.get("_replace") is True
    if replace:
        data.wipe_props.add(prop)
    positions = _Positions(where, value, calendar, zone)
    # The hot loop of a series load: a run of observations on one date records that date once.
    points, dates, last_day = data.points, data.dates, None
    for index, observation in enumerate(observations):
        text = observation.get("time") if type(observation) is dict else None
        try:
            placed = _placed(text, calendar, zone) if type(text) is str else None
        except (ValueError, OverflowError):
            placed = None  # the careful path below says what is wrong
        if placed is not None and placed[2]:
            instant, day = placed[0], placed[1]
        else:
            try:
                moment, observation = _observation(where, index, observation, calendar, zone, positions)
                instant, day = moment.astimezone(UTC), moment.astimezone(zone).date()
            except OverflowError:
                raise InvalidData(f"{where}: observation #{index} falls outside the years 1 to 9999") from None
        points[(prop, instant)] = observation
        if day != last_day:
            last_day = day
            dates.append(("series", day.isoformat(), prop))
    return _header(value)


@lru_cache(maxsize=65_536)
def _placed(text: str, calendar: Calendar, zone: tzinfo) -> tuple[datetime, date, bool]:
    """(UTC instant, local date, whether it is on the calendar) of an explicit time text: the
    series of one batch name the same instants again and again (100 series × 288 five-minute
    times share 288 texts), so each is parsed and checked once."""
    moment = parse_instant(text, zone)
    on_calendar = not calendar.regular or calendar.aligned(moment, zone)
    return moment.astimezone(UTC), moment.astimezone(zone).date(), on_calendar


def _observation(
    where: str, index: int, observation, calendar: Calendar, zone: tzinfo, positions: _Positions
) -> tuple[datetime, dict]:
    """(its time, the observation to store): explicit ones as sent, positional ones with their time."""
    is_object = isinstance(observation, dict)
    if is_object and "time" in observation:
        moment = _series_time(observation["time"], zone, f"{where}: observation #{index} time")
        if calendar.regular and not calendar.aligned(moment, zone):
            raise InvalidData(
                f"[9001] {observation['time'][:40]} does not align with calendar {calendar.name}"
                f" ({where}, observation #{index})"
            )
        return moment, observation
    moment = positions.at(index)
    stamp = moment.isoformat()
    return moment, ({"time": stamp, **observation} if is_object else {"time": stamp, "value": observation})


def _curve_date(prop: str, value: dict) -> date:
    ondate = value.get("ondate")
    raw = ondate.get("curveDate") if isinstance(ondate, dict) else ondate
    if raw is None:
        raise InvalidData(f"property {prop!r}: curve has no curve date (ondate.curveDate)")
    return parse_date(raw, f"property {prop!r}: curve date")


def _curve(prop: str, value: dict, data: DataWrites) -> dict:
    day = _curve_date(prop, value)
    contracts = value.get("contracts", [])
    if not isinstance(contracts, list):
        raise InvalidData(f"property {prop!r}: contracts must be an array")
    merge = value.get("_merge") is True
    curve = {k: v for k, v in value.items() if k != "_merge"}
    data.update(DataWrites(curves={(prop, day): (curve, merge)}))
    data.dates.append(("curves", day.isoformat(), prop))
    return _header(value)


def _matrix(prop: str, value: dict, data: DataWrites) -> dict:
    if value.get("ondate") is None:
        raise InvalidData(f"property {prop!r}: matrix has no ondate")
    raw = value["ondate"].get("curveDate") if isinstance(value["ondate"], dict) else value["ondate"]
    day = parse_date(raw, f"property {prop!r}: matrix ondate")
    data.matrices[(prop, day)] = value
    data.dates.append(("matrix", day.isoformat(), prop))
    return _header(value)


def normalise_event(prop: str, index: int, event) -> tuple[str, datetime, str, dict]:
    """(event id, instant, date, stored event) with eventstart/eventend/eventtype defaulted."""
    if not isinstance(event, dict) or event.get("_type") != EVENT_TYPE:
        raise InvalidData(f"property {prop!r}: item #{index} is not a VarEvent")
    ident = event.get("_id", event.get("eventid"))
    if not isinstance(ident, str) or not ident or len(ident) > MAX_ID_LENGTH:
        raise InvalidData(f"property {prop!r}: event #{index} has no _id or eventid")
    if "eventtime" not in event:
        raise InvalidData(f"property {prop!r}: event {ident[:64]!r} has no eventtime")
    instant, day = parse_time(event["eventtime"], f"property {prop!r}: event {ident[:64]!r} eventtime")
    for bound in ("eventstart", "eventend"):
        if bound in event:
            parse_time(event[bound], f"property {prop!r}: event {ident[:64]!r} {bound}")
    stored = {
        "eventstart": event["eventtime"],
        "eventend": event["eventtime"],
        "eventtype": "#Event",
        **event,
        "_id": ident,
    }
    return ident, instant, day, stored


def _events(prop: str, items: list, data: DataWrites) -> dict:
    for index, event in enumerate(items):
        ident, instant, day, stored = normalise_event(prop, index, event)
        data.events[(prop, ident)] = (instant, stored)
        data.dates.append(("events", day, prop))
    return {"_type": EVENT_LIST_TYPE}


def is_event_list(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and any(isinstance(v, dict) and v.get("_type") == EVENT_TYPE for v in value)
    )


def extract_data(doc: dict) -> tuple[dict, DataWrites | None]:
    """Split an element's data properties into header (kept in the document) and rows.

    Raises InvalidData naming the property and problem; returns (doc, None) for plain objects.
    """
    if _CONTAINERS.isdisjoint(map(type, doc.values())):
        return doc, None  # the common flat object: nothing to split
    data = None
    for prop, value in doc.items():
        if isinstance(value, dict):
            kind = value.get("_type")
            if kind in SERIES_TYPES:
                handler = _series
            elif kind in CURVE_TYPES:
                handler = _curve
            elif kind == MATRIX_TYPE:
                handler = _matrix
            else:
                continue
        elif is_event_list(value):
            handler = _events
        else:
            continue
        if data is None:
            data, doc = DataWrites(), dict(doc)
        doc[prop] = handler(prop, value, data)
    return doc, data


def merge_headers(stored_doc: dict, incoming_doc: dict) -> dict:
    """Data headers merge with the stored header (metadata merges, spec §6)."""
    merged = {}
    for prop, header in incoming_doc.items():
        previous = stored_doc.get(prop)
        if is_data_header(header) and is_data_header(previous) and previous.get("_type") == header.get("_type"):
            merged[prop] = {**previous, **header}
    return {**incoming_doc, **merged} if merged else incoming_doc
