"""List queries in SQL: a parsed ListQuery onto one scoped SELECT, values bound, never formatted."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, and_, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from batchsvc.core.queries import Filter, ListQuery, convert


@dataclass(frozen=True)
class Field:
    """A filterable/sortable field: its SQL expression and how query text converts to it."""

    column: object
    kind: str  # core.queries TEXT | INT | DATETIME


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


def source_clause(id_column, source: str):
    """The SQL form of core.identity.visible: private, ids without '#'; public, with '#'; all, both."""
    if source == "private":
        return not_(id_column.startswith("#", autoescape=True))
    if source == "public":
        return id_column.startswith("#", autoescape=True)
    return true() if source == "all" else false()


def apply_list_query(
    session: Session, base: Select, query: ListQuery, *, field_for, sortable: dict, search, default_sort
):
    """Run a list query: (total matches, one page of rows)."""
    clauses = [filter_clause(field_for(condition.field), condition) for condition in query.filters]
    if query.search:
        clauses.append(or_(*(column.icontains(query.search, autoescape=True) for column in search)))
    filtered = base.where(*clauses)
    total = session.scalar(select(func.count()).select_from(filtered.order_by(None).subquery()))
    order = []
    for name, direction in query.sort:  # names checked by core.queries.check_fields
        column = sortable[name].column
        order.append(column.desc().nulls_last() if direction < 0 else column.asc().nulls_last())
    order += [c.desc() if d < 0 else c.asc() for c, d in default_sort]
    rows = session.scalars(filtered.order_by(*order).limit(query.limit).offset(query.skip)).all()
    return total, rows
