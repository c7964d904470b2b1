"""Marshmallow shapes of the API: request envelopes and documented responses."""

from __future__ import annotations

import flask_smorest.error_handler
from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, fields, validate

from batchsvc.core.apikeys import KEY_ID_PATTERN, MAX_NAME, ROLES, USER_PATTERN
from batchsvc.core.identity import BATCH_ID_PATTERN, MAX_ID_LENGTH, MAX_TEXT_LENGTH

# OpenAPI shape of one element (§3): an object with a string _id; anything else is an element failure.
ELEMENT_DOC = {
    "type": "object",
    "required": ["_id"],
    "properties": {"_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}, "_type": {"type": "string"}},
}


def _text(**kwargs):
    return fields.String(allow_none=True, validate=validate.Length(max=MAX_TEXT_LENGTH), **kwargs)


class VarBatchSchema(Schema):
    """The body of a batch submission (or a bare array, taken as its elements), for the OpenAPI
    document; core.batches.read_batch_request checks it."""

    class Meta:
        unknown = EXCLUDE

    _id = fields.String(data_key="_id", attribute="id", allow_none=True, validate=validate.Regexp(BATCH_ID_PATTERN))
    _type = fields.String(
        data_key="_type", attribute="type", validate=validate.Equal("VarBatch", error='_type must be "VarBatch"')
    )
    elements = fields.Raw(required=True, metadata={"type": "array", "minItems": 1, "items": ELEMENT_DOC})
    name = _text()
    service = _text()
    loader = _text()
    correlationId = _text(attribute="correlation_id")
    description = _text()
    reason = _text()
    history = fields.Boolean(allow_none=True, truthy={True}, falsy={False})


class DataSummarySchema(Schema):
    curves = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    series = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    matrix = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    events = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    failures = fields.Dict(keys=fields.String(), values=fields.String())


class ChangeCountSchema(Schema):
    """How many items of one kind a batch created, updated (a new version), left unchanged, removed."""

    created = fields.Integer(required=True)
    updated = fields.Integer(required=True)
    unchanged = fields.Integer(required=True)
    removed = fields.Integer(required=True)


class ChangeCountsSchema(Schema):
    """What a batch did to each kind of item (SPEC §12): objects, observations (points), curve
    dates, matrix dates and events."""

    objects = fields.Nested(ChangeCountSchema, required=True)
    points = fields.Nested(ChangeCountSchema, required=True)
    curves = fields.Nested(ChangeCountSchema, required=True)
    matrices = fields.Nested(ChangeCountSchema, required=True)
    events = fields.Nested(ChangeCountSchema, required=True)


class BatchSummarySchema(Schema):
    """What a batch did: who, when, what status, the data it updated per date, and how many
    items it created, updated or left unchanged."""

    _id = fields.String(data_key="_id", required=True)
    user = fields.String(required=True)
    environment = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"example": "2024-01-06T16:20:27.433Z"})
    service = fields.String(allow_none=True, required=True)
    name = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)
    loader = fields.String(allow_none=True, required=True)
    correlationId = fields.String(allow_none=True, required=True)
    description = fields.String(allow_none=True, required=True)
    history = fields.Boolean(allow_none=True, required=True)
    source = fields.String(required=True, validate=validate.OneOf(["private", "public"]))
    status = fields.String(required=True, validate=validate.OneOf(["success", "warning", "failed"]))
    message = fields.String(required=True)
    size = fields.Integer(required=True)
    summary = fields.Nested(DataSummarySchema, required=True)
    counts = fields.Nested(
        ChangeCountsSchema, metadata={"description": "absent only on summaries stored before history was kept"}
    )
    rollbackOf = fields.String(metadata={"description": "a rollback: the batch it undid"})
    rolledBackBy = fields.String(metadata={"description": "the rollback that undid this batch"})


class StoredObjectSchema(Schema):
    """An object as stored: its properties plus the server fields."""

    class Meta:
        unknown = INCLUDE

    _id = fields.String(data_key="_id", required=True)
    _type = fields.String(data_key="_type", required=True)
    _version = fields.Integer(data_key="_version", required=True)
    _created = fields.String(data_key="_created", required=True)
    _timestamp = fields.String(data_key="_timestamp", required=True)
    _user = fields.String(data_key="_user", required=True)
    _batch = fields.String(data_key="_batch", required=True)


class ObjectVersionSchema(Schema):
    """One version of an object, as its versions list shows it."""

    _id = fields.String(data_key="_id", required=True)
    _version = fields.Integer(data_key="_version", required=True)
    _timestamp = fields.String(data_key="_timestamp", required=True)
    _user = fields.String(data_key="_user", required=True)
    _batch = fields.String(data_key="_batch", required=True)
    reason = fields.String(allow_none=True, required=True)


class BuildInfoSchema(Schema):
    service = fields.String(required=True)
    release = fields.String(required=True)
    version = fields.String(required=True)
    build = fields.String(required=True)


class ErrorSchema(flask_smorest.error_handler.ErrorSchema):
    """Every non-2xx body (api/errors.py error_response)."""

    requestId = fields.String(metadata={"description": "The request's id, as in the X-Request-Id header"})  # noqa: N815


class HealthSchema(Schema):
    status = fields.String(required=True)


class ApiKeyRequestSchema(Schema):
    """A new API key (documentation of the body; core.apikeys checks it)."""

    class Meta:
        unknown = RAISE

    user = fields.String(
        validate=validate.Regexp(USER_PATTERN),
        metadata={"description": "the email the key logs in with; default: the caller"},
    )
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)), required=True, validate=validate.Length(min=1))
    name = fields.String(allow_none=True, validate=validate.Length(max=MAX_NAME))
    expires = fields.DateTime(
        allow_none=True,
        metadata={"description": "when the key stops working (exact, no leeway); a date is its midnight UTC"},
    )


class ApiKeySchema(Schema):
    """An API key as lists show it: never the key or its hash."""

    _id = fields.String(data_key="_id", required=True, validate=validate.Regexp(f"^{KEY_ID_PATTERN}$"))
    name = fields.String(allow_none=True, required=True)
    user = fields.String(required=True)
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)), required=True)
    created = fields.String(required=True, metadata={"example": "2024-01-06T16:20:27.433Z"})
    expires = fields.String(allow_none=True, required=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    """A new API key, with the key itself: shown this once, never again."""

    key = fields.String(required=True, metadata={"example": "bsk_0123456789abcdef01234567_..."})
