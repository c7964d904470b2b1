"""Parsing request bodies into JSON and the checks PostgreSQL JSONB and the spec need."""

from __future__ import annotations

import json
import math
import re

import orjson

from batchsvc.core.errors import InvalidInput
from batchsvc.core.identity import MAX_ID_LENGTH

MAX_DEPTH = 64
MAX_KEYS = 10_000

# A JSON escape of U+0000 preceded by an even number of backslashes (so not "\\u0000" text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


def same_json(a, b) -> bool:
    """Whether two JSON documents are equal as values, as PostgreSQL's jsonb compares them (and so
    as object writes are compared): key order aside, 1 and 1.0 one number, true not 1."""
    if a != b:
        return False
    # Python's == is that rule, but for taking true for 1 and false for 0: the same text (keys
    # sorted) settles it at once; an equal pair that serialises differently is looked at closely.
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS) or (
        _strictly_equal(a, b)
    )


def _strictly_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_strictly_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_strictly_equal, a, b))
    return a == b


def loads(raw: bytes):
    """Parse a JSON body strictly: no NaN/Infinity, no lone surrogates, doubles in range."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(_explain_invalid(raw, exc)) from None
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        found = first_bad_element(value, lambda element: _first_problem(element, _nul))
        raise InvalidInput(_NUL_PROBLEM + (_element_suffix(*found[:2]) if found else ""))
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
    found = first_bad_element(body, lambda element: _first_problem(element, _rejected))
    if found:
        index, element, problem = found
        return problem + _element_suffix(index, element)
    return _first_problem(body, _rejected) or f"body is not valid JSON: {exc}"


_NUL_PROBLEM = "\\u0000 is not allowed in keys or strings"


_SURROGATE_PROBLEM = "a lone UTF-16 surrogate (such as \\ud800) is not allowed in keys or strings"


def _rejected(node) -> str | None:
    if isinstance(node, _Rejected):
        return node.problem
    if isinstance(node, str) and _SURROGATE.search(node):
        return _SURROGATE_PROBLEM
    return None


def _nul(node) -> str | None:
    return _NUL_PROBLEM if isinstance(node, str) and "\x00" in node else None


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store or compare `text` (a NUL, a lone surrogate), or None.

    The same rule as for body strings, for values from the query string, headers and paths."""
    return _nul(text) or (_SURROGATE_PROBLEM if _SURROGATE.search(text) else None)


def _first_problem(value, problem_of) -> str | None:
    """The first problem `problem_of` finds in `value` or any key or value inside it.

    Iterative, so a hostile document nested as deep as the parser allows cannot exhaust the
    Python stack.
    """
    stack = [value]
    while stack:
        node = stack.pop()
        problem = problem_of(node)
        if problem:
            return problem
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def first_bad_element(body, problem_of) -> tuple[int, object, str] | None:
    """(index, element, problem) of the first batch element for which `problem_of` names one."""
    elements = body.get("elements") if isinstance(body, dict) else body
    if isinstance(elements, list):
        for index, element in enumerate(elements):
            problem = problem_of(element)
            if problem:
                return index, element, problem
    return None


def _element_suffix(index: int, element) -> str:
    if isinstance(element, dict) and isinstance(element.get("_id"), str):
        return f" (element #{index}, _id {element['_id'][:64]!r})"
    return f" (element #{index})"


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
        if isinstance(ident, str) and 0 < len(ident) <= MAX_ID_LENGTH:
            return ident
    return f"#{index}"
