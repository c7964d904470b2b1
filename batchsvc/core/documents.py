"""Parsing request bodies into JSON and the checks PostgreSQL JSONB and the spec need."""

from __future__ import annotations

import json
import math
import re

import orjson

from batchsvc.core.errors import InvalidInput

MAX_DEPTH = 64
MAX_KEYS = 10_000

# A JSON escape of U+0000 preceded by an even number of backslashes (so not "\\u0000" text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(raw: bytes):
    """Parse a JSON body strictly: no NaN/Infinity, no lone surrogates, doubles in range."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(_explain_invalid(raw, exc)) from None
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise InvalidInput(f"\\u0000 is not allowed in keys or strings{_where_nul(value)}")
    return value


class _Rejected:
    """A value lenient parsing accepted but the service does not: NaN, Infinity, ±1e999."""

    def __init__(self, problem: str):
        self.problem = problem


def _lenient_number(text: str):
    number = float(text)
    return _Rejected(f"the number {text[:32]} is outside the double range") if math.isinf(number) else number


def _lenient_int(text: str):
    return _lenient_number(text) if len(text) > 300 else int(text)


def _explain_invalid(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Say what is wrong with a body orjson refused, and in which element, when we can tell.

    The strict parser only reports a position; the standard library accepts NaN, Infinity,
    huge numbers and lone surrogates, so a second, lenient parse (on this error path only)
    finds which of those it was.
    """
    if "depth limit" in str(exc):
        return f"body has nesting deeper than {MAX_DEPTH} levels"
    try:
        body = json.loads(
            raw,
            parse_constant=lambda name: _Rejected(f"{name} is not a valid JSON number"),
            parse_float=_lenient_number,
            parse_int=_lenient_int,
        )
    except (ValueError, RecursionError):
        return f"body is not valid JSON: {exc}"
    elements = body.get("elements") if isinstance(body, dict) else body
    if isinstance(elements, list):
        for index, element in enumerate(elements):
            problem = _rejected_in(element)
            if problem:
                return f"{problem} (element #{index}{_id_suffix(element)})"
    return _rejected_in(body) or f"body is not valid JSON: {exc}"


def _rejected_in(value) -> str | None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, _Rejected):
            return node.problem
        if isinstance(node, str) and _SURROGATE.search(node):
            return "a lone UTF-16 surrogate (such as \\ud800) is not allowed in keys or strings"
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


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

    Walks level by level, with no recursion, so a hostile 10,000-level document cannot
    exhaust the Python stack; a flat element costs one type check per value.
    """
    level, depth = ([value] if type(value) is dict or type(value) is list else []), 1
    while level:
        if depth > max_depth:
            return f"nesting deeper than {max_depth} levels"
        below = []
        for node in level:
            if type(node) is dict:
                if len(node) > max_keys:
                    return f"an object with {len(node)} keys (at most {max_keys})"
                node = node.values()
            below.extend([child for child in node if type(child) is dict or type(child) is list])
        level, depth = below, depth + 1
    return None


def element_label(index: int, element) -> str:
    """How failures and errors name an element: its `_id` when usable, else `#index`."""
    if isinstance(element, dict):
        ident = element.get("_id")
        if isinstance(ident, str) and 0 < len(ident) <= 256:
            return ident
    return f"#{index}"
