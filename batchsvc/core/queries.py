"""ODSL list conventions: paging, exact and function filters, sorting, search — parsed, not yet SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from batchsvc.core.documents import text_problem
from batchsvc.core.errors import InvalidInput
from batchsvc.core.times import parse_instant

DEFAULT_LIMIT, MAX_LIMIT, MAX_SKIP = 100, 1000, 10_000_000
TEXT, INT, DATETIME = "text", "int", "datetime"  # how query text converts to a field's values
SERVER_PARAMETERS = frozenset({"_id", "_type", "_version", "_created", "_timestamp", "_user", "_batch"})
_FUNCTION = re.compile(r"^(gt|gte|lt|lte|range|in|ne)\((.*)\)$", re.DOTALL)
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_SORT_ITEM = re.compile(r"^(-?)([A-Za-z_][A-Za-z0-9_.-]{0,63})$")


@dataclass(frozen=True)
class Filter:
    """One filter parameter: `field op values`, values still as the query text had them."""

    field: str
    op: str  # eq | gt | gte | lt | lte | ne | in | range
    values: tuple[str, ...]


@dataclass
class ListQuery:
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    sort: list[tuple[str, int]] = field(default_factory=list)
    search: str | None = None
    filters: list[Filter] = field(default_factory=list)


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


def parse_filter(name: str, raw: str) -> Filter:
    """`name=value` or `name=fn(args)` as a Filter; the function's arity is checked here."""
    match = _FUNCTION.match(raw)
    if not match:
        return Filter(name, "eq", (raw,))
    function, inner = match.groups()
    args = tuple(a.strip() for a in inner.split(",")) if inner.strip() else ()
    if function == "in" and not args:
        raise InvalidInput(f"in() on {name!r} needs at least one value")
    if function == "range" and len(args) != 2:
        raise InvalidInput(f"range() on {name!r} needs two values: range(from,to)")
    if function not in ("in", "range") and len(args) != 1:
        raise InvalidInput(f"{function}() on {name!r} takes exactly one value")
    return Filter(name, function, args)


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
        elif name.startswith("_") and name not in SERVER_PARAMETERS:
            raise InvalidInput(f"unknown query parameter {name[:64]!r}")
        elif not _FIELD_NAME.match(name):
            raise InvalidInput(f"invalid filter field {name[:64]!r}")
        else:
            query.filters.append(parse_filter(name, raw))
    return query


def convert(field_name: str, kind: str, raw: str):
    """A filter value as the field's kind: whole numbers in range, ISO instants, or the text."""
    problem = text_problem(raw)
    if problem:
        raise InvalidInput(f"filter {field_name!r}: {problem}")
    if kind == INT:
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidInput(f"filter {field_name!r} needs a whole number, got {raw[:40]!r}") from None
        if abs(value) > 2**31 - 1:
            raise InvalidInput(f"filter {field_name!r} is out of range")
        return value
    if kind == DATETIME:
        try:
            return parse_instant(raw)
        except ValueError:
            raise InvalidInput(f"filter {field_name!r} needs an ISO-8601 date or time, got {raw[:40]!r}") from None
    return raw


def check_fields(query: ListQuery, what: str, *, sortable: dict[str, str], filterable: dict[str, str] | None) -> None:
    """Refuse sorting or filtering `what` (summaries, objects, events) by fields it does not have.

    `filterable=None` admits any field name (objects filter on any top-level property)."""
    for name, _ in query.sort:
        if name not in sortable:
            raise InvalidInput(f"cannot sort by {name[:64]!r}; sortable fields: {', '.join(sorted(sortable))}")
    if filterable is not None:
        for condition in query.filters:
            if condition.field not in filterable:
                raise InvalidInput(
                    f"cannot filter {what} by {condition.field[:64]!r}; fields: {', '.join(sorted(filterable))}"
                )
