"""OpenAPI fragments for what the views parse by hand (raw bodies, free-form filters)."""

from __future__ import annotations

import re

from batchsvc.api.schemas import ELEMENT_DOC
from batchsvc.core.data import DATA_SORTABLE, EVENT_FIELDS
from batchsvc.core.identity import (
    BATCH_ID_PATTERN,
    BATCH_ID_RULE,
    DEFAULT_ENVIRONMENT,
    ENVIRONMENT_PATTERN,
    MAX_TEXT_LENGTH,
    SOURCES,
)
from batchsvc.core.objects import OBJECT_SORTABLE
from batchsvc.core.periods import RANGE_FORMS
from batchsvc.core.queries import (
    FIELD_PATH_PATTERN,
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_IN_VALUES,
    MAX_PROJECT_FIELDS,
    MAX_REGEX_LENGTH,
)
from batchsvc.core.summaries import SUMMARY_FIELDS

ERROR = {"$ref": "#/components/schemas/Error"}
SUMMARY = {"$ref": "#/components/schemas/BatchSummary"}
STORED_OBJECT = {"$ref": "#/components/schemas/StoredObject"}
# What a list returns with `_project`: `_id` and the fields asked for.
PROJECTED = {"type": "object", "required": ["_id"], "description": "with _project: _id and the named fields only"}


# Every non-2xx carries it (SPEC §7): the SDKs print it.
ODSL_ERROR_HEADER = {
    "x-odsl-error": {"required": True, "schema": {"type": "string"}, "description": "[code] message, on one line"}
}


def _error(description):
    return {
        "description": description,
        "headers": ODSL_ERROR_HEADER,
        "content": {"application/json": {"schema": ERROR}},
    }


ENVIRONMENT = {
    "in": "header",
    "name": "x-odsl-environment",
    "required": False,
    "schema": {"type": "string", "pattern": ENVIRONMENT_PATTERN, "default": DEFAULT_ENVIRONMENT},
    "description": "Environment of the objects and summaries (default production)",
}
# Path parameters the route converters cannot describe (flask-smorest merges these into the auto docs).
SOURCE = {
    "in": "path",
    "name": "source",
    "required": True,
    "description": "private, public or all",
    "schema": {"type": "string", "enum": list(SOURCES)},
}
BATCH_ID = {
    "in": "path",
    "name": "batch_id",
    "required": True,
    "schema": {"type": "string", "pattern": BATCH_ID_PATTERN},
}
BATCH_REF = {
    "in": "path",
    "name": "ref",
    "required": True,
    "description": "private, public, all or a batch id",
    "schema": {"type": "string", "pattern": BATCH_ID_PATTERN},
}


# Documented on every operation that needs credentials, by access.Blueprint.requires.
AUTH_ERRORS = {"401": _error("Missing or invalid credentials"), "403": _error("The caller lacks the role")}


FILTER_DESCRIPTION = (
    'A JSON object in MongoDB style, e.g. {"status":"warning","size":{"$gte":100}}. Keys are field paths, '
    'dotted into nested properties ("loc.lat"). Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists '
    '$regex (with "$options":"i"), and $and $or $not. Values compare by JSON type: {"price":{"$gt":50}} '
    'matches numbers above 50, never the string "60"; a $ne, $nin or $not also matches a missing field, '
    "and null matches a missing field. Server fields with columns (timestamps, ids, names, status, user) compare "
    "on them, timestamps as ISO-8601 instants. All of _filter and the plain filters must hold. "
    f"At most {MAX_FILTER_DEPTH} levels of nesting, {MAX_IN_VALUES} values per $in/$nin, "
    f"{MAX_REGEX_LENGTH} characters per $regex (a PostgreSQL regular expression), {MAX_FILTER_LENGTH} characters."
)
_COMPARABLE = {"oneOf": [{"type": "number"}, {"type": "string"}]}
_ANY_VALUE = {"nullable": True, "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
FIELD_CONDITION = {
    "oneOf": [
        _ANY_VALUE,
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "$eq": _ANY_VALUE,
                "$ne": _ANY_VALUE,
                **{op: _COMPARABLE for op in ("$gt", "$gte", "$lt", "$lte")},
                "$in": {"type": "array", "maxItems": MAX_IN_VALUES, "items": _ANY_VALUE},
                "$nin": {"type": "array", "maxItems": MAX_IN_VALUES, "items": _ANY_VALUE},
                "$exists": {"type": "boolean"},
                "$regex": {"type": "string", "maxLength": MAX_REGEX_LENGTH},
                "$options": {"type": "string", "enum": ["", "i"]},
            },
        },
    ]
}


def filter_schema(fields) -> dict:
    """`_filter`'s JSON: any field path (the list's own fields shown) to a value or operators."""
    return {
        "type": "object",
        "properties": {
            **{name: FIELD_CONDITION for name in sorted(fields)},
            "$and": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "$or": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "$not": {"type": "object"},
        },
        "additionalProperties": FIELD_CONDITION,
    }


PROJECT_PATTERN = rf"^\s*{FIELD_PATH_PATTERN}\s*(,\s*{FIELD_PATH_PATTERN}\s*){{0,{MAX_PROJECT_FIELDS - 1}}}$"


def list_params(sortable) -> list[dict]:
    """Paging, search, a `_sort` whose documented pattern admits exactly the `sortable` fields,
    `_filter` and `_project` (paging comes first: the API-key list takes only it)."""
    field = "(" + "|".join(re.escape(name) for name in sorted(sortable)) + ")"
    ws = r"[ \t\n\r]*"  # JSON's whitespace (no vertical tab or form feed inside the object form)
    item, pair = rf"-?{field}", rf'"{field}"{ws}:{ws}-?1'
    pattern = rf"^\s*({item}\s*(,\s*{item}\s*)*|\{{{ws}{pair}{ws}(,{ws}{pair}{ws})*\}})\s*$"
    return [
        {"in": "query", "name": "_limit", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {
            "in": "query",
            "name": "_skip",
            "schema": {"type": "integer", "minimum": 0, "maximum": 10000000, "default": 0},
        },
        {
            "in": "query",
            "name": "_sort",
            "schema": {"type": "string", "pattern": pattern},
            "description": f'field,-field or {{"field":1}}; fields: {", ".join(sorted(sortable))}',
        },
        {"in": "query", "name": "_search", "schema": {"type": "string"}, "description": "case-insensitive substring"},
        {
            "in": "query",
            "name": "_filter",
            "content": {
                "application/json": {
                    "schema": filter_schema(sortable),
                    "examples": {
                        "fields": {"value": {"status": "warning", "size": {"$gte": 100}}},
                        "nested": {
                            "value": {"$or": [{"loc.lat": {"$gt": 50}}, {"name": {"$regex": "^A", "$options": "i"}}]}
                        },
                        "types": {"value": {"MID_PRICE": {"$gt": 50}, "_id": {"$nin": ["a", "b"]}}},
                    },
                }
            },
            "description": FILTER_DESCRIPTION,
        },
        {
            "in": "query",
            "name": "_project",
            "schema": {"type": "string", "pattern": PROJECT_PATTERN},
            "description": f"comma-separated field paths to return (with _id), e.g. name,loc.lat; at most "
            f"{MAX_PROJECT_FIELDS}; absent fields are left out",
        },
    ]


def list_of(item) -> dict:
    """A page of `item`s, or of projections of them (`_project`)."""
    return {"type": "array", "items": {"anyOf": [item, PROJECTED]}}


_LIST_HEADERS = {"x-total-count": {"schema": {"type": "integer"}, "description": "number of matches"}}
_BATCH_ID_RULES = f"Batch ids are {BATCH_ID_RULE}"

SUBMIT = {
    "description": "Body: a VarBatch, or a bare array taken as its elements. Parsed as JSON whatever the "
    "Content-Type; Content-Encoding gzip accepted.",
    "parameters": [
        ENVIRONMENT,
        {
            "in": "query",
            "name": "_replace",
            "schema": {"type": "boolean"},
            "description": "every element replaces its object",
        },
        {"in": "query", "name": "_atomic", "schema": {"type": "boolean"}, "description": "all-or-nothing"},
        {"in": "query", "name": "_reason", "schema": {"type": "string", "maxLength": MAX_TEXT_LENGTH}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/VarBatch"},
                        {"type": "array", "minItems": 1, "items": ELEMENT_DOC},
                    ]
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "Replay of an already applied batch",
            "content": {"application/json": {"schema": SUMMARY}},
        },
        "400": _error("Invalid body or parameters"),
        "409": _error("The batch id was applied with another body"),
        "413": _error("Body or element count over the limit"),
        "201": {
            "description": "Applied; a `warning` batch also says how many elements failed",
            "headers": {
                "Location": {"required": True, "schema": {"type": "string"}, "description": "the summary's URL"},
                "x-odsl-failures": {"schema": {"type": "integer"}, "description": "failed elements (warning)"},
            },
        },
        "422": {
            "description": "Nothing was written; the stored summary",
            "headers": ODSL_ERROR_HEADER,
            "content": {"application/json": {"schema": SUMMARY}},
        },
    },
}
SUBMIT_TO_SOURCE = {
    **SUBMIT,
    "parameters": [
        *SUBMIT["parameters"],
        {**BATCH_REF, "description": SOURCE["description"], "schema": SOURCE["schema"]},
    ],
}
LIST = {
    "description": "Paged (x-total-count header). Any other plain parameter filters by exact match; "
    "gt(), gte(), lt(), lte(), range(a,b), in(a,b), ne() work on timestamp and size. _filter takes a "
    "MongoDB-style JSON filter, _project the fields to return.",
    "parameters": [ENVIRONMENT, *list_params(SUMMARY_FIELDS)],
    "responses": {
        "200": {
            "description": "A page of summaries",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": list_of(SUMMARY)}},
        },
        "400": _error("Invalid list parameters"),
    },
}
LIST_OR_GET = {
    "description": "`private`, `public` or `all` list summaries (paged, filterable like the list route); "
    f"any other value is a batch id and returns that summary (the list parameters are checked, not applied). "
    f"{_BATCH_ID_RULES}.",
    "parameters": [ENVIRONMENT, *list_params(SUMMARY_FIELDS)],
    "responses": {
        "200": {
            "description": "A page of summaries, or one summary",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"oneOf": [list_of(SUMMARY), SUMMARY]}}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such batch"),
    },
}
GET = {
    "parameters": [ENVIRONMENT],
    "responses": {"400": _error("Invalid source"), "404": _error("No such batch")},
}
DELETE = {
    "description": "Admins delete any summary; writers the summaries they created.",
    "parameters": [ENVIRONMENT],
    "responses": {"400": _error("Invalid source"), "404": _error("No such batch")},
}
OBJECT_LIST = {
    "description": "Paged (x-total-count header). Any other plain parameter filters a top-level property by exact "
    "match; _filter takes a MongoDB-style JSON filter on any (nested) property, _project the fields to return.",
    "parameters": [ENVIRONMENT, *list_params(OBJECT_SORTABLE)],
    "responses": {
        "200": {
            "description": "A page of objects",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": list_of(STORED_OBJECT)}},
        },
        "400": _error("Invalid list parameters"),
    },
}
_WRITE_FLAGS = [
    {
        "in": "query",
        "name": "_replace",
        "schema": {"type": "boolean"},
        "description": "every object replaces its stored one instead of merging into it",
    },
    {"in": "query", "name": "_atomic", "schema": {"type": "boolean"}, "description": "all-or-nothing (arrays)"},
    {"in": "query", "name": "_reason", "schema": {"type": "string", "maxLength": MAX_TEXT_LENGTH}},
]
OBJECT_WRITE = {
    "description": "Body: one object with `_id`, or an array of them, applied exactly as a batch of those "
    'elements (merge, `_replace`, typed data, `#` ids for batch.admin) with service "object" and a new '
    "batch id; every call is a new write (no idempotency). Parsed as JSON whatever the Content-Type. "
    "One object answers the object as stored (201, Location: its URL) or a 422 error naming what is wrong "
    "with it; an array answers the batch summary (201, or 422 when nothing could be written).",
    "parameters": [ENVIRONMENT, *_WRITE_FLAGS],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [ELEMENT_DOC, {"type": "array", "minItems": 1, "items": ELEMENT_DOC}]}
            }
        },
    },
    "responses": {
        "201": {
            "description": "Written: the object as stored (one object), or the batch summary (an array; a "
            "`warning` also says how many elements failed)",
            "headers": {
                "Location": {
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "the object's URL (one object) or the summary's (an array)",
                },
                "x-odsl-failures": {"schema": {"type": "integer"}, "description": "failed elements (warning)"},
            },
            "content": {"application/json": {"schema": {"anyOf": [STORED_OBJECT, SUMMARY]}}},
        },
        "400": _error("Invalid body or parameters"),
        "413": _error("Body or element count over the limit"),
        "422": {
            "description": "Nothing was written: an error naming what is wrong with the object (one object), "
            "or the stored summary (an array)",
            "headers": ODSL_ERROR_HEADER,
            "content": {"application/json": {"schema": {"anyOf": [ERROR, SUMMARY]}}},
        },
    },
}
OBJECT_WRITE_TO_SOURCE = {
    **OBJECT_WRITE,
    "description": OBJECT_WRITE["description"] + " The source admits only its own ids: private those without "
    "`#`, public those with `#` (any other is an element failure), all both.",
}
_PAGING = list_params({})[:2]  # _limit and _skip
_REASON = {"in": "query", "name": "_reason", "schema": {"type": "string", "maxLength": MAX_TEXT_LENGTH}}
OBJECT_GET = {
    "description": "The path after the source is an object id (ids may contain '/'). When no stored object has "
    "that id, a last segment of digits selects that version of the object the rest names, and `*` lists its "
    "versions, newest first (paged, x-total-count). `_version=N` and `_asof=<ISO instant>` take the whole path "
    "as the id: that version, or the object as it was served at that instant (410 when that history was pruned).",
    "parameters": [
        ENVIRONMENT,
        {
            "in": "query",
            "name": "_asof",
            "schema": {"type": "string", "format": "date-time"},
            "description": "the object as the store knew it at this instant",
        },
        {"in": "query", "name": "_version", "schema": {"type": "integer", "minimum": 1, "maximum": 999999999}},
        *_PAGING,
    ],
    "responses": {
        "200": {
            "description": "The object (or one version of it), or a page of its versions",
            "headers": {"x-total-count": {"schema": {"type": "integer"}, "description": "versions (lists only)"}},
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/StoredObject"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/ObjectVersion"}},
                        ]
                    }
                }
            },
        },
        "400": _error("Invalid source, version or instant"),
        "404": _error("No such object, version, or no such object at that instant"),
        "410": _error("That version, or the history at that instant, was pruned"),
    },
}
OBJECT_DELETE = {
    "description": "ODSL semantics: the object returns to its previous version, or is removed with its data when "
    "it has only one. Recorded as a batch (service `object`) that a rollback can undo.",
    "parameters": [ENVIRONMENT, _REASON],
    "responses": {
        "400": _error("Invalid source or reason"),
        "404": _error("No such object"),
        "409": _error("Its previous version was pruned"),
    },
}
ROLLBACK = {
    "description": "Every object, observation, curve date, matrix and event the batch changed returns to its "
    "state before the batch; what it created is removed, what it removed comes back. A rollback is a batch of "
    "its own (`service: rollback`, `rollbackOf`, `counts`); the undone summary gains `rolledBackBy`. Batch.admin, "
    "or the writer who submitted the batch. If later batches changed any of those items, nothing is changed and "
    "the answer is 409 listing them (at most 100: `errors.items` = {item: {kind, reason, batches}}, items named "
    "as the read routes name them) with the batches that did; `_force=true` rolls back the rest and reports "
    "those as failures. A rollback can itself be rolled back.",
    "parameters": [
        ENVIRONMENT,
        {"in": "query", "name": "_force", "schema": {"type": "boolean"}, "description": "roll back the rest"},
        {**_REASON, "description": 'default "Rollback of batch <id>"'},
    ],
    "responses": {
        "201": {
            "description": "Rolled back: the rollback's summary",
            "headers": {
                "Location": {"required": True, "schema": {"type": "string"}, "description": "the summary's URL"},
                "x-odsl-failures": {"schema": {"type": "integer"}, "description": "items not rolled back"},
            },
        },
        "400": _error("Invalid parameters"),
        "404": _error("No such batch"),
        "409": _error("Already rolled back, failed, or changed since by later batches (errors.items lists them)"),
        "410": _error("The batch's history was pruned"),
        "422": {
            "description": "Nothing could be rolled back (_force); the rollback's summary",
            "headers": ODSL_ERROR_HEADER,
            "content": {"application/json": {"schema": SUMMARY}},
        },
    },
}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
_RANGE = {
    "in": "query",
    "name": "_range",
    "schema": {"type": "string"},
    "description": f"Which observations (or, for a tenor, which curve dates): {RANGE_FORMS}. A partial date "
    "stands for its whole period; between includes all of d2's period; partial dates are read in tz, else the "
    "series' timezone, else UTC. Send '+' of an offset as %2B. A _range that cannot be read is 400.",
}
DATA_LIST = {
    "description": "The data properties (series, curves, matrices, event lists) of the source's objects as "
    "headers: _id OBJ:PROP, _type, the header fields and _ref, no observations. Paged (x-total-count); any "
    "other plain parameter filters a header field (or _id, _type) by exact match or a function; default "
    "order _id.",
    "parameters": [ENVIRONMENT, *list_params(DATA_SORTABLE)],
    "responses": {
        "200": {
            "description": "A page of data headers",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": _OBJECTS}},
        },
        "400": _error("Invalid list parameters"),
    },
}
DATA_GET = {
    "description": "OBJ:PROP returns a series with its observations (or the latest curve/matrix of a curve or "
    "matrix property); OBJ:PROP:YYYY-MM-DD returns that date's curve or matrix; OBJ:PROP:TENOR (a last "
    "segment that is not a date, e.g. M01 or 2025Q1), or OBJ:PROP?tenor=TENOR, returns that tenor's history "
    "on a curve as a VarTimeSeries (time = curve date, value = the contract's value). Object ids may "
    "contain ':'.",
    "parameters": [
        ENVIRONMENT,
        _RANGE,
        {
            "in": "query",
            "name": "tenor",
            "schema": {"type": "string"},
            "description": "a curve property's tenor (e.g. M01): its history across curve dates; 404 when the "
            "property is not a curve",
        },
    ],
    "responses": {
        "200": {"description": "The data", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": _error("Invalid id or range"),
        "404": _error("No such data"),
    },
}
EVENT_LIST = {
    "description": "OBJ:LIST returns the events of that list (paged, x-total-count); OBJ:LIST:EVENTID returns "
    "one event. When OBJ:LIST names no event list, the last segments are read as LIST:EVENTID.",
    "parameters": [ENVIRONMENT, *list_params(EVENT_FIELDS)],
    "responses": {
        "200": {
            "description": "A page of events, or one event",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"oneOf": [_OBJECTS, {"type": "object"}]}}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such event list or event"),
    },
}
EVENT_QUERY = {
    "description": "The events of the event list ?event=OBJ:LIST (paged, x-total-count; _sort=eventtime).",
    "parameters": [
        ENVIRONMENT,
        {
            "in": "query",
            "name": "event",
            "required": True,
            "schema": {"type": "string"},
            "description": "the event list, OBJ:LIST",
        },
        *list_params(EVENT_FIELDS),
    ],
    "responses": {
        "200": {
            "description": "A page of events",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": _OBJECTS}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such event list"),
    },
}

# The shared pieces other route modules (api/apikeys.py) build their docs from.
error, LIST_HEADERS = _error, _LIST_HEADERS
