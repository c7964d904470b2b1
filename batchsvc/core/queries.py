"""ODSL list conventions: paging, filters (plain, functions, `_filter`), sorting, search, `_project` — parsed, not yet SQL."""

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
# A field path of `_filter` and `_project`: names dotted into nested properties (never array indexes).
FIELD_PATH_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,15}"
_FIELD_PATH = re.compile(f"^{FIELD_PATH_PATTERN}$")
MAX_FILTER_DEPTH = 16  # levels of JSON objects and arrays in one `_filter`, the outermost object included
MAX_FILTER_TERMS = 2000  # conditions and $in/$nin values in one `_filter`, all together
MAX_FILTER_LENGTH = 65_536  # characters of `_filter`
MAX_IN_VALUES = 1000
MAX_REGEX_LENGTH = 256
MAX_PROJECT_FIELDS = 50


@dataclass(frozen=True)
class Filter:
    """One filter parameter: `field op values`, values still as the query text had them."""

    field: str
    op: str  # eq | gt | gte | lt | lte | ne | in | range
    values: tuple[str, ...]


@dataclass(frozen=True)
class Condition:
    """One test of `_filter` on the value at `path`: `eq` (a JSON value; null also matches a
    missing field), `in` (a tuple of such values), `gt` `gte` `lt` `lte` (a number or a string:
    only values of the same JSON type match), `exists` (no operand), `regex` (a pattern,
    `options` "i" for case-insensitive). $ne, $nin and `$exists: false` are Not(...) of these."""

    path: tuple[str, ...]
    op: str
    value: object = None
    options: str = ""


@dataclass(frozen=True)
class AllOf:
    parts: tuple  # of Condition | AllOf | AnyOf | Not; empty matches everything


@dataclass(frozen=True)
class AnyOf:
    parts: tuple  # never empty


@dataclass(frozen=True)
class Not:
    part: object


Where = Condition | AllOf | AnyOf | Not


@dataclass
class ListQuery:
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    sort: list[tuple[str, int]] = field(default_factory=list)
    search: str | None = None
    filters: list[Filter] = field(default_factory=list)
    where: Where | None = None  # `_filter`; holds with the plain filters
    project: tuple[tuple[str, ...], ...] | None = None  # `_project`: the paths to keep (and `_id`)


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
        elif name == "_filter":
            query.where = parse_where(raw)
        elif name == "_project":
            query.project = parse_projection(raw)
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


NO_MATCH = object()  # a `_filter` operand of another JSON type than the field holds: compares false


def json_operand(field_name: str, kind: str, value):
    """A `_filter` operand as a typed field's value (whole or decimal numbers for INT, ISO
    instants for DATETIME, strings for TEXT), or NO_MATCH when its JSON type differs."""
    if kind == INT:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else NO_MATCH
    if not isinstance(value, str):
        return NO_MATCH
    if kind == DATETIME:
        try:
            return parse_instant(value)
        except ValueError:
            raise InvalidInput(f"_filter: {field_name!r} compares with ISO-8601 instants, got {value[:40]!r}") from None
    return value


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


# --- _filter ------------------------------------------------------------------------------

_COMPARISONS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_FIELD_OPERATORS = ("$eq", "$ne", *_COMPARISONS, "$in", "$nin", "$exists", "$regex", "$options", "$not")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(f"_filter: {message}")


def _nested_over(spec: dict, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels in `spec` (itself level 1); no recursion."""
    level, depth = [spec], 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return False


class _FilterParser:
    """Turns the parsed JSON of one `_filter` into a Where tree, counting its terms."""

    def __init__(self):
        self.terms = 0

    def count(self, terms: int) -> None:
        self.terms += terms
        if self.terms > MAX_FILTER_TERMS:
            raise _bad(f"more than {MAX_FILTER_TERMS} conditions and $in/$nin values")

    def document(self, spec: dict) -> Where:
        """A filter object: every key (a field path or $and/$or/$not) must hold."""
        parts = []
        for key, value in spec.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
                    raise _bad(f"{key} needs a non-empty array of filter objects")
                items = tuple(self.document(item) for item in value)
                parts.append(AllOf(items) if key == "$and" else AnyOf(items))
            elif key == "$not":
                if not isinstance(value, dict):
                    raise _bad("$not needs a filter object")
                parts.append(Not(self.document(value)))
            elif key.startswith("$"):
                raise _bad(f"unknown operator {key[:64]!r}; a filter object takes field paths, $and, $or and $not")
            else:
                parts.append(self.field(_path(key), value))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def field(self, path: tuple[str, ...], value) -> Where:
        """`path: value` (equality) or `path: {operators}`."""
        if isinstance(value, dict) and any(key.startswith("$") for key in value):
            if not all(key.startswith("$") for key in value):
                raise _bad(f"{_name(path)!r} mixes operators and field names in one object")
            return self.operators(path, value)
        return self.condition(path, "eq", _value(path, value))

    def condition(self, path, op, value=None, options="") -> Condition:
        self.count(1)
        return Condition(path, op, value, options)

    def operators(self, path: tuple[str, ...], ops: dict) -> Where:
        name = _name(path)
        parts = []
        for op, operand in ops.items():
            if op not in _FIELD_OPERATORS:
                raise _bad(f"unknown operator {op[:64]!r} on {name!r}; operators: {', '.join(_FIELD_OPERATORS)}")
            if op in ("$eq", "$ne"):
                condition = self.condition(path, "eq", _value(path, operand))
                parts.append(condition if op == "$eq" else Not(condition))
            elif op in _COMPARISONS:
                if isinstance(operand, bool) or not isinstance(operand, int | float | str):
                    raise _bad(f"{op} on {name!r} needs a number or a string, got {_json_type(operand)}")
                parts.append(self.condition(path, _COMPARISONS[op], _value(path, operand)))
            elif op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise _bad(f"{op} on {name!r} needs an array of values, got {_json_type(operand)}")
                if len(operand) > MAX_IN_VALUES:
                    raise _bad(f"{op} on {name!r} has {len(operand)} values (at most {MAX_IN_VALUES})")
                self.count(len(operand))
                condition = self.condition(path, "in", tuple(_value(path, item) for item in operand))
                parts.append(condition if op == "$in" else Not(condition))
            elif op == "$exists":
                if not isinstance(operand, bool):
                    raise _bad(f"$exists on {name!r} needs true or false, got {_json_type(operand)}")
                condition = self.condition(path, "exists")
                parts.append(condition if operand else Not(condition))
            elif op == "$regex":
                parts.append(self.regex(path, operand, ops.get("$options", "")))
            elif op == "$options":
                if "$regex" not in ops:
                    raise _bad(f"$options on {name!r} needs a $regex beside it")
            else:  # $not: the operators it holds must not all hold
                if not isinstance(operand, dict) or not operand or not all(key.startswith("$") for key in operand):
                    raise _bad(f'$not on {name!r} needs an object of operators, like {{"$gt": 5}}')
                parts.append(Not(self.operators(path, operand)))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def regex(self, path, pattern, options) -> Condition:
        name = _name(path)
        if not isinstance(pattern, str):
            raise _bad(f"$regex on {name!r} needs a string, got {_json_type(pattern)}")
        if len(pattern) > MAX_REGEX_LENGTH:
            raise _bad(f"$regex on {name!r} is {len(pattern)} characters long (at most {MAX_REGEX_LENGTH})")
        if options not in ("", "i"):
            raise _bad(f'$options on {name!r} must be "i" (case-insensitive) or ""')
        return self.condition(path, "regex", _value(path, pattern), options)


def _path(key: str) -> tuple[str, ...]:
    if not _FIELD_PATH.match(key):
        raise _bad(
            f"invalid field path {key[:64]!r}: names of letters, digits, _ and - (not starting with a digit "
            "or -), dotted into nested properties, at most 16 names of 64 characters"
        )
    return tuple(key.split("."))


def _name(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _value(path, value):
    """An operand as compared: JSON as given, but no text PostgreSQL cannot hold (a NUL, a surrogate)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            problem = text_problem(node)
            if problem:
                raise _bad(f"value for {_name(path)!r}: {problem.replace('keys or strings', 'values')}")
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return value


def parse_where(raw: str) -> Where | None:
    """`_filter` as a Where tree (None for `{}`); 400 on anything the grammar does not admit."""
    if len(raw) > MAX_FILTER_LENGTH:
        raise _bad(f"longer than {MAX_FILTER_LENGTH} characters")
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise _bad(f"nesting deeper than {MAX_FILTER_DEPTH} levels") from None
        raise _bad(f'not valid JSON ({exc}); send an object like {{"status":"warning"}}') from None
    if not isinstance(spec, dict):
        raise _bad(f'must be a JSON object like {{"status":"warning"}}, got {_json_type(spec)}')
    if _nested_over(spec, MAX_FILTER_DEPTH):
        raise _bad(f"nesting deeper than {MAX_FILTER_DEPTH} levels")
    where = _FilterParser().document(spec)
    return None if where == AllOf(()) else where


# --- _project -----------------------------------------------------------------------------


def parse_projection(raw: str) -> tuple[tuple[str, ...], ...]:
    """`_project=a,b.c`: the field paths to return (with `_id`)."""
    names = [name.strip() for name in raw.split(",")]
    if len(names) > MAX_PROJECT_FIELDS:
        raise InvalidInput(f"_project names {len(names)} fields (at most {MAX_PROJECT_FIELDS})")
    for name in names:
        if not _FIELD_PATH.match(name):
            raise InvalidInput(
                f"_project has an invalid field {name[:64]!r}; give field paths separated by commas, like name,loc.lat"
            )
    paths = dict.fromkeys(tuple(name.split(".")) for name in names)
    # `a` already returns all of `a.b`
    return tuple(path for path in paths if not any(path[:n] in paths for n in range(1, len(path))))


def project(document: dict, paths: tuple[tuple[str, ...], ...]) -> dict:
    """Only `_id` and the fields at `paths` (none a prefix of another) of a rendered document,
    nested as they were; a path that is not there, or runs into a value that is not an
    object, is left out."""
    out = {"_id": document["_id"]} if "_id" in document else {}
    for path in paths:
        node = document
        for name in path:
            if not isinstance(node, dict) or name not in node:
                break
            node = node[name]
        else:
            target = out
            for name in path[:-1]:
                child = target.get(name)
                if not isinstance(child, dict):
                    child = target[name] = {}
                target = child
            target[path[-1]] = node
    return out


def shape(query: ListQuery, documents: list[dict]) -> list[dict]:
    """The documents of one page as the query asks to see them (`_project`)."""
    if query.project is None:
        return documents
    return [project(document, query.project) for document in documents]
