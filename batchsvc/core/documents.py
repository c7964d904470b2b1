"""Parsing request bodies into JSON and the checks PostgreSQL JSONB and the spec need."""

from __future__ import annotations

import re

import orjson

from batchsvc.core.errors import InvalidInput

MAX_DEPTH = 64
MAX_KEYS = 10_000

# A JSON escape of U+0000 preceded by an even number of backslashes (so not "\\u0000" text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def loads(raw: bytes):
    """Parse a JSON body strictly: no NaN/Infinity, no lone surrogates, doubles in range."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise InvalidInput(f"\\u0000 is not allowed in keys or strings{_where_nul(value)}")
    return value


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _where_nul(body) -> str:
    elements = body.get("elements") if isinstance(body, dict) else body
    if isinstance(elements, list):
        for index, element in enumerate(elements):
            if _contains_nul(element):
                return f" (element #{index}{_id_suffix(element)})"
    return ""


def _id_suffix(element) -> str:
    if isinstance(element, dict) and isinstance(element.get("_id"), str):
        return f", _id {element['_id'][:64]!r}"
    return ""


def check_shape(value, *, max_depth: int = MAX_DEPTH, max_keys: int = MAX_KEYS) -> str | None:
    """Return why `value` is too deep or too wide for the store, or None when it fits.

    Iterative, so a hostile 10,000-level document cannot exhaust the Python stack.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                return f"nesting deeper than {max_depth} levels"
            if len(node) > max_keys:
                return f"an object with {len(node)} keys (at most {max_keys})"
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            if depth > max_depth:
                return f"nesting deeper than {max_depth} levels"
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return None


def element_label(index: int, element) -> str:
    """How failures and errors name an element: its `_id` when usable, else `#index`."""
    if isinstance(element, dict):
        ident = element.get("_id")
        if isinstance(ident, str) and 0 < len(ident) <= 256:
            return ident
    return f"#{index}"
