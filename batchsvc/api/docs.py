"""OpenAPI fragments for what the views parse by hand (raw bodies, free-form filters)."""

from __future__ import annotations

from batchsvc.api.schemas import ELEMENT_DOC

ERROR = {"$ref": "#/components/schemas/Error"}
SUMMARY = {"$ref": "#/components/schemas/BatchSummary"}


def _error(description):
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ENVIRONMENT = {
    "in": "header",
    "name": "x-odsl-environment",
    "required": False,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", "default": "production"},
    "description": "Environment of the objects and summaries (default production)",
}
# Path parameters the route converters cannot describe (flask-smorest merges these into the auto docs).
SOURCE = {
    "in": "path",
    "name": "source",
    "required": True,
    "description": "private, public or all",
    "schema": {"type": "string", "enum": ["private", "public", "all"]},
}
BATCH_ID = {
    "in": "path",
    "name": "batch_id",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
BATCH_REF = {
    "in": "path",
    "name": "ref",
    "required": True,
    "description": "private, public, all or a batch id",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_SORT_FIELD = "-?[A-Za-z_][A-Za-z0-9_.-]{0,63}"
_SORT_PATTERN = rf"^\s*({_SORT_FIELD}\s*(,\s*{_SORT_FIELD}\s*)*|\{{.*\}})\s*$"
AUTH_ERRORS = {"401": _error("Missing or invalid token"), "403": _error("The token lacks the role")}
LIST_PARAMS = [
    {"in": "query", "name": "_limit", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    {"in": "query", "name": "_skip", "schema": {"type": "integer", "minimum": 0, "maximum": 10000000, "default": 0}},
    {
        "in": "query",
        "name": "_sort",
        "schema": {"type": "string", "pattern": _SORT_PATTERN},
        "description": 'field,-field or {"field":1}',
    },
    {"in": "query", "name": "_search", "schema": {"type": "string"}, "description": "case-insensitive substring"},
]
_LIST_HEADERS = {"x-total-count": {"schema": {"type": "integer"}, "description": "number of matches"}}
_BATCH_ID_RULES = "Batch ids are 1-128 characters of A-Za-z0-9._:-"

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
        {"in": "query", "name": "_reason", "schema": {"type": "string", "maxLength": 256}},
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
        "422": {
            "description": "Nothing was written; the stored summary",
            "content": {"application/json": {"schema": SUMMARY}},
        },
        **AUTH_ERRORS,
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
    "parameters": [ENVIRONMENT, *LIST_PARAMS],
    "responses": {
        "200": {"description": "OK", "headers": _LIST_HEADERS},
        "400": _error("Invalid list parameters"),
        **AUTH_ERRORS,
    },
}
LIST_OR_GET = {
    "description": "`private`, `public` or `all` list summaries (paged, filterable like the list route); "
    f"any other value is a batch id and returns that summary. {_BATCH_ID_RULES}.",
    "parameters": [ENVIRONMENT, *LIST_PARAMS],
    "responses": {
        "200": {
            "description": "A page of summaries, or one summary",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"oneOf": [{"type": "array", "items": SUMMARY}, SUMMARY]}}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such batch"),
        **AUTH_ERRORS,
    },
}
GET = {
    "parameters": [ENVIRONMENT],
    "responses": {"400": _error("Invalid source"), "404": _error("No such batch"), **AUTH_ERRORS},
}
DELETE = {
    "description": "Admins delete any summary; writers the summaries they created.",
    "parameters": [ENVIRONMENT],
    "responses": {"400": _error("Invalid source"), "404": _error("No such batch"), **AUTH_ERRORS},
}
OBJECT_LIST = {
    "description": "Paged (x-total-count header). Any other plain parameter filters a top-level property by exact match.",
    "parameters": [ENVIRONMENT, *LIST_PARAMS],
    "responses": {
        "200": {"description": "OK", "headers": _LIST_HEADERS},
        "400": _error("Invalid list parameters"),
        **AUTH_ERRORS,
    },
}
OBJECT_GET = {
    "parameters": [ENVIRONMENT],
    "responses": {"400": _error("Invalid source"), "404": _error("No such object"), **AUTH_ERRORS},
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
        **AUTH_ERRORS,
    },
}
EVENT_LIST = {
    "parameters": [ENVIRONMENT, *LIST_PARAMS],
    "responses": {
        "200": {
            "description": "A page of events",
            "headers": _LIST_HEADERS,
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
        },
        "400": _error("Invalid list parameters"),
        "404": _error("No such event list"),
        **AUTH_ERRORS,
    },
}

# The shared pieces other route modules (api/apikeys.py) build their docs from.
error, LIST_HEADERS = _error, _LIST_HEADERS
