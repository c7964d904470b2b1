"""ODSL list conventions: paging, exact and function filters, sorting, search."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import Select, and_, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from batchsvc.core.errors import InvalidInput

DEFAULT_LIMIT, MAX_LIMIT, MAX_SKIP = 100, 1000, 10_000_000
RESERVED = frozenset({"_limit", "_skip", "_sort", "_search"})
_FUNCTION = re.compile(r"^(gt|gte|lt|lte|range|in|ne)\((.*)\)$", re.DOTALL)
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_SORT_ITEM = re.compile(r"^(-?)([A-Za-z_][A-Za-z0-9_.-]{0,63})$")


@dataclass(frozen=True)
class Field:
    """A filterable/sortable field: its SQL expression and how query text converts to it."""

    column: object
    kind: str  # text | int | datetime


@dataclass
class ListQuery:
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    sort: list[tuple[str, int]] = field(default_factory=list)
    search: str | None = None
    filters: list[tuple[str, str]] = field(default_factory=list)


def _number(name: str, raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,10}", raw.strip()):
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}, got {value}")
    return value


def _parse_sort(raw: str) -> list[tuple[str, int]]:
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            spec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInput("_sort must be 'field,-field' or a JSON object like {\"field\":1}") from None
        if not isinstance(spec, dict) or not spec:
            raise InvalidInput("_sort must be 'field,-field' or a JSON object like {\"field\":1}")
        items = []
        for name, direction in spec.items():
            if direction not in (1, -1) or isinstance(direction, bool):
                raise InvalidInput(f"_sort direction for {name[:64]!r} must be 1 or -1")
            items.append((name, direction))
        return items
    items = []
    for part in raw.split(","):
        match = _SORT_ITEM.match(part.strip())
        if not match:
            raise InvalidInput(f"_sort has an invalid field {part.strip()[:64]!r}")
        items.append((match.group(2), -1 if match.group(1) else 1))
    return items


def parse_list_query(params: dict[str, list[str]]) -> ListQuery:
    """Build a ListQuery from query parameters (name -> values); 400 on anything malformed."""
    query = ListQuery()
    for name, values in params.items():
        if len(values) != 1:
            raise InvalidInput(f"query parameter {name[:64]!r} given more than once")
        raw = values[0]
        if name == "_limit":
            query.limit = _number("_limit", raw, 1, MAX_LIMIT)
        elif name == "_skip":
            query.skip = _number("_skip", raw, 0, MAX_SKIP)
        elif name == "_sort":
            query.sort = _parse_sort(raw)
        elif name == "_search":
            query.search = raw
        elif name.startswith("_") and name not in (
            "_id",
            "_type",
            "_version",
            "_created",
            "_timestamp",
            "_user",
            "_batch",
        ):
            raise InvalidInput(f"unknown query parameter {name[:64]!r}")
        elif not _FIELD_NAME.match(name):
            raise InvalidInput(f"invalid filter field {name[:64]!r}")
        else:
            query.filters.append((name, raw))
    return query


def _convert(field_name: str, spec: Field, raw: str):
    if "\x00" in raw:
        raise InvalidInput(f"filter {field_name!r} contains a NUL character")
    if spec.kind == "int":
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidInput(f"filter {field_name!r} needs a whole number, got {raw[:40]!r}") from None
        if abs(value) > 2**31 - 1:
            raise InvalidInput(f"filter {field_name!r} is out of range")
        return value
    if spec.kind == "datetime":
        text = raw.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise InvalidInput(f"filter {field_name!r} needs an ISO-8601 date or time, got {raw[:40]!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return raw


def filter_clause(field_name: str, spec: Field, raw: str):
    """The WHERE clause for one filter parameter; values are bound, never formatted into SQL."""
    column = spec.column
    match = _FUNCTION.match(raw)
    if not match:
        return column == _convert(field_name, spec, raw)
    function, inner = match.groups()
    args = [a.strip() for a in inner.split(",")] if inner.strip() else []
    if function == "in":
        if not args:
            raise InvalidInput(f"in() on {field_name!r} needs at least one value")
        return column.in_([_convert(field_name, spec, a) for a in args])
    if function == "range":
        if len(args) != 2:
            raise InvalidInput(f"range() on {field_name!r} needs two values: range(from,to)")
        low, high = (_convert(field_name, spec, a) for a in args)
        return and_(column >= low, column <= high)
    if len(args) != 1:
        raise InvalidInput(f"{function}() on {field_name!r} takes exactly one value")
    value = _convert(field_name, spec, args[0])
    return {
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
        "ne": or_(column != value, column.is_(None)),
    }[function]


def source_clause(id_column, source: str):
    """private: ids without '#'; public: ids with '#'; all: both."""
    if source == "private":
        return not_(id_column.startswith("#", autoescape=True))
    if source == "public":
        return id_column.startswith("#", autoescape=True)
    return true() if source == "all" else false()


def apply_list_query(
    session: Session, base: Select, query: ListQuery, *, field_for, sortable: dict, search, default_sort
):
    """Run a list query: (total matches, one page of rows)."""
    clauses = [filter_clause(name, field_for(name), raw) for name, raw in query.filters]
    if query.search:
        clauses.append(or_(*(column.icontains(query.search, autoescape=True) for column in search)))
    filtered = base.where(*clauses)
    total = session.scalar(select(func.count()).select_from(filtered.order_by(None).subquery()))
    order = []
    for name, direction in query.sort:
        if name not in sortable:
            raise InvalidInput(f"cannot sort by {name[:64]!r}; sortable fields: {', '.join(sorted(sortable))}")
        column = sortable[name].column
        order.append(column.desc().nulls_last() if direction < 0 else column.asc().nulls_last())
    order += [c.desc() if d < 0 else c.asc() for c, d in default_sort]
    rows = session.scalars(filtered.order_by(*order).limit(query.limit).offset(query.skip)).all()
    return total, rows
