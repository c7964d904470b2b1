"""Request ids (SPEC §13): the caller's X-Request-Id when it is well formed, else a new one."""

from __future__ import annotations

import re
import uuid

from flask import g, request

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """This request's id: the caller's X-Request-Id when it is 1-128 of A-Za-z0-9._:-, else a new UUID."""
    rid = g.get("request_id")
    if rid is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        rid = g.request_id = sent if _REQUEST_ID.fullmatch(sent) else str(uuid.uuid4())
    return rid
