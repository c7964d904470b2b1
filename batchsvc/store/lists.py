"""List queries in SQL: a parsed ListQuery onto one scoped SELECT, values bound, never formatted."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Select, and_, any_, bindparam, cast, false, func, literal, not_, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from sqlalchemy.types import Text

from batchsvc.core.errors import InvalidInput
from batchsvc.core.queries import (
    DATETIME,
    NO_MATCH,
    TEXT,
    AllOf,
    AnyOf,
    Condition,
    Filter,
    ListQuery,
    Not,
    Where,
    convert,
    json_operand,
)

_INVALID_REGEX = "2201B"  # PostgreSQL's invalid_regular_expression (also "too complex")


@dataclass(frozen=True)
class Field:
    """A filterable/sortable field: its SQL expression and how query text converts to it."""

    column: object
    kind: str  # core.queries TEXT | INT | DATETIME
    nullable: bool = False


@dataclass(frozen=True)
class Documents:
    """What `_filter` runs on: the JSONB documents, and the top-level fields that are columns."""

    doc: object
    columns: dict[str, Field]


def filter_clause(spec: Field, condition: Filter):
    """The WHERE clause of one filter."""
    column = spec.column
    values = [convert(condition.field, spec.kind, raw) for raw in condition.values]
    if condition.op == "eq":
        return column == values[0]
    if condition.op == "in":
        return column.in_(values)
    if condition.op == "range":
        return and_(column >= values[0], column <= values[1])
    value = values[0]
    return {
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
        "ne": or_(column != value, column.is_(None)),
    }[condition.op]


# --- _filter -----------------------------------------------------------------------------


def where_clause(node: Where, target: Documents):
    """The WHERE clause of a `_filter` tree; every leaf is true or false, never NULL, so
    NOT (for $ne, $nin, $not) means exactly "the rest"."""
    if isinstance(node, AllOf):
        return and_(true(), *(where_clause(part, target) for part in node.parts))
    if isinstance(node, AnyOf):
        return or_(false(), *(where_clause(part, target) for part in node.parts))
    if isinstance(node, Not):
        return not_(where_clause(node.part, target))
    if len(node.path) == 1 and node.path[0] in target.columns:
        return _column_condition(target.columns[node.path[0]], node)
    return _document_condition(target.doc, node)


def _column_condition(spec: Field, condition: Condition):
    """A condition on a server field kept in its own column (indexed, typed)."""
    column, name, op = spec.column, condition.path[0], condition.op
    if op == "exists":
        return true()  # served on every document
    if op == "eq" and condition.value is None:
        return column.is_(None) if spec.nullable else false()
    if op == "in":
        values = [json_operand(name, spec.kind, item) for item in condition.value]
        values = [value for value in values if value is not NO_MATCH]
        clauses = [column.in_(values)] if values else []
        if spec.nullable:
            clauses = [and_(column.is_not(None), clause) for clause in clauses]
            if None in condition.value:
                clauses.append(column.is_(None))
        return or_(false(), *clauses)
    if op == "regex":
        if spec.kind == DATETIME:
            raise InvalidInput(f"_filter: $regex cannot match {name!r}, a date-time; compare it with $gt/$lt")
        if spec.kind != TEXT:
            return false()
        clause = column.op("~*" if condition.options == "i" else "~", is_comparison=True)(condition.value)
    else:
        value = json_operand(name, spec.kind, condition.value)
        if value is NO_MATCH:
            return false()
        clause = {
            "eq": column == value,
            "gt": column > value,
            "gte": column >= value,
            "lt": column < value,
            "lte": column <= value,
        }[op]
    return and_(column.is_not(None), clause) if spec.nullable else clause


def _jsonb(value):
    return bindparam(None, value, type_=JSONB)


def _nested(path: tuple[str, ...], value) -> dict:
    for name in reversed(path):
        value = {name: value}
    return value


def _document_condition(doc, condition: Condition):
    """A condition on the value at a path of the JSONB document (`doc #> path`, the path bound
    as text[]); comparisons only match values of the operand's JSON type."""
    path, op, value = condition.path, condition.op, condition.value
    at = doc.op("#>", return_type=JSONB)(bindparam(None, list(path), type_=ARRAY(Text)))
    present = at.is_not(None)
    if op == "exists":
        return present
    if op == "eq":
        if value is None:  # null, or no such field
            return or_(doc.contains(_nested(path, None)), not_(present))
        if isinstance(value, dict | list):
            return and_(present, at == _jsonb(value))
        return doc.contains(_nested(path, value))  # containment: a GIN index on doc can serve it
    if op == "in":
        texts = [orjson.dumps(item).decode() for item in value]
        clause = and_(present, at == any_(cast(bindparam(None, texts, type_=ARRAY(Text)), ARRAY(JSONB))))
        return or_(clause, not_(present)) if None in value else clause
    if op == "regex":
        text = doc.op("#>>", return_type=Text)(bindparam(None, list(path), type_=ARRAY(Text)))
        matches = text.op("~*" if condition.options == "i" else "~", is_comparison=True)(value)
        return and_(present, func.jsonb_typeof(at) == "string", matches)
    kind = "string" if isinstance(value, str) else "number"
    compare = {
        "gt": at > _jsonb(value),
        "gte": at >= _jsonb(value),
        "lt": at < _jsonb(value),
        "lte": at <= _jsonb(value),
    }
    return and_(present, func.jsonb_typeof(at) == kind, compare[op])


def source_clause(id_column, source: str):
    """The SQL form of core.identity.visible: private, ids without '#'; public, with '#'; all, both."""
    if source == "private":
        return not_(id_column.startswith("#", autoescape=True))
    if source == "public":
        return id_column.startswith("#", autoescape=True)
    return true() if source == "all" else false()


def apply_list_query(
    session: Session,
    base: Select,
    query: ListQuery,
    *,
    field_for,
    sortable: dict,
    search,
    default_sort,
    documents: Documents,
):
    """Run a list query: (total matches, one page of rows)."""
    clauses = [filter_clause(field_for(condition.field), condition) for condition in query.filters]
    if query.search:
        clauses.append(or_(*(column.icontains(query.search, autoescape=True) for column in search)))
    if query.where is not None:
        clauses.append(where_clause(query.where, documents))
    filtered = base.where(*clauses)
    order = []
    for name, direction in query.sort:  # names checked by core.queries.check_fields
        column = sortable[name].column
        order.append(column.desc().nulls_last() if direction < 0 else column.asc().nulls_last())
    order += [c.desc() if d < 0 else c.asc() for c, d in default_sort]
    if query.where is not None:
        check_patterns(session, query.where)
    total = session.scalar(select(func.count()).select_from(filtered.order_by(None).subquery()))
    rows = session.scalars(filtered.order_by(*order).limit(query.limit).offset(query.skip)).all()
    return total, rows


def _patterns(node: Where) -> list[str]:
    if isinstance(node, AllOf | AnyOf):
        return [pattern for part in node.parts for pattern in _patterns(part)]
    if isinstance(node, Not):
        return _patterns(node.part)
    return [node.value] if node.op == "regex" else []


def check_patterns(session: Session, where: Where) -> None:
    """400 for a $regex PostgreSQL cannot compile, whether or not any row would reach it."""
    patterns = list(dict.fromkeys(_patterns(where)))
    if not patterns:
        return
    try:
        session.execute(select(*(literal("", Text).op("~", is_comparison=True)(p) for p in patterns)))
    except DataError as exc:
        diag = getattr(exc.orig, "diag", None)
        if getattr(exc.orig, "pgcode", None) != _INVALID_REGEX or diag is None:
            raise
        session.rollback()
        raise InvalidInput(
            f"_filter: $regex is not a valid PostgreSQL regular expression ({diag.message_primary})"
        ) from None
