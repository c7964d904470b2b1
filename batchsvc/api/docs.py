"""OpenAPI fragments for what the views parse by hand (raw bodies, free-form filters)."""

from __future__ import annotations

import re

from batchsvc.api.schemas import ELEMENT_DOC
from batchsvc.core.data import EVENT_FIELDS
from batchsvc.core.identity import (
    BATCH_ID_PATTERN,
    BATCH_ID_RULE,
    DEFAULT_ENVIRONMENT,
    ENVIRONMENT_PATTERN,
    MAX_TEXT_LENGTH,
    SOURCES,
)
from batchsvc.core.objects import OBJECT_SORTABLE
from batchsvc.core.summaries import SUMMARY_FIELDS

ERROR = {"$ref": "#/components/schemas/Error"}
SUMMARY = {"$ref": "#/components/schemas/BatchSummary"}


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


def list_params(sortable) -> list[dict]:
    """Paging, search and a `_sort` whose documented pattern admits exactly the `sortable` fields."""
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
    ]


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
    "gt(), gte(), lt(), lte(), range(a,b), in(a,b), ne() work on timestamp and size.",
    "parameters": [ENVIRONMENT, *list_params(SUMMARY_FIELDS)],
    "responses": {
        "200": {"description": "OK", "headers": _LIST_HEADERS},
        "400": _error("Invalid list parameters"),
    },
}
LIST_OR_GET = {
    "description": "`private`, `public` or `all` list summaries (paged, filterable like the list route); "
    f"any other value is a batch id and returns that summary. {_BATCH_ID_RULES}.",
    "parameters": [ENVIRONMENT, *list_params(SUMMARY_FIELDS)],
    "responses": {
        "200": {
            "description": "A page of summaries, or one summary",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"oneOf": [{"type": "array", "items": SUMMARY}, SUMMARY]}}},
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
    "description": "Paged (x-total-count header). Any other plain parameter filters a top-level property by exact match.",
    "parameters": [ENVIRONMENT, *list_params(OBJECT_SORTABLE)],
    "responses": {
        "200": {"description": "OK", "headers": _LIST_HEADERS},
        "400": _error("Invalid list parameters"),
    },
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
    "description": "Every object the batch changed returns to its state before the batch; objects it created "
    "are removed. A rollback is a batch of its own (`service: rollback`, `rollbackOf`); the undone summary gains "
    "`rolledBackBy`. Batch.admin, or the writer who submitted the batch. If later batches changed any of those "
    "objects, nothing is changed and the answer is 409 listing them (at most 100) with the batches that did; "
    "`_force=true` rolls back the rest and reports those as failures. A rollback can itself be rolled back.",
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
                "x-odsl-failures": {"schema": {"type": "integer"}, "description": "objects not rolled back"},
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
DATA_GET = {
    "description": "OBJ:PROP returns a series with its observations (or the latest curve/matrix of a curve or "
    "matrix property); OBJ:PROP:YYYY-MM-DD returns that date's curve or matrix.",
    "parameters": [
        ENVIRONMENT,
        {
            "in": "query",
            "name": "_range",
            "schema": {"type": "string"},
            "description": "last(n), from(date) or between(date1,date2)",
        },
    ],
    "responses": {
        "200": {"description": "The data", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": _error("Invalid id or range"),
        "404": _error("No such data"),
    },
}
EVENT_LIST = {
    "parameters": [ENVIRONMENT, *list_params(EVENT_FIELDS)],
    "responses": {
        "200": {
            "description": "A page of events",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such event list"),
    },
}

# The shared pieces other route modules (api/apikeys.py) build their docs from.
error, LIST_HEADERS = _error, _LIST_HEADERS
