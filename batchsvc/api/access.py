"""Who may call each operation: declared on the view, enforced before anything else runs, shown in OpenAPI."""

from __future__ import annotations

import flask_smorest
from flask import Flask, current_app, g, request

from batchsvc.api.docs import AUTH_ERRORS
from batchsvc.core.identity import Principal

PUBLIC = "public"
# flask-smorest's own blueprint serves the OpenAPI document and the docs page: open by contract.
_OPEN_BLUEPRINTS = frozenset({"api-docs"})
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})  # HEAD runs the GET view; OPTIONS is Flask's own


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, whose operations say who may call them.

    `@blp.requires(role)` or `@blp.public` on every view method: the app refuses to start
    with an operation that has neither, so a new route cannot forget its credentials.
    """

    def requires(self, role: str):
        """The operation needs valid credentials holding `role` (401 without, 403 without the role)."""

        def decorator(func):
            func = self.doc(responses=AUTH_ERRORS)(func)
            func._access = role
            return func

        return decorator

    def public(self, func):
        """The operation is open: no credentials (health, docs, metrics)."""
        return open_to_all(self.doc(security=[])(func))


def open_to_all(view):
    """Mark a plain Flask view (not an API operation) as needing no credentials."""
    view._access = PUBLIC
    return view


def _declared_access(app: Flask, endpoint: str | None, method: str):
    """The access an endpoint's view declares for `method`: a role, PUBLIC, or None."""
    if endpoint is None:
        return None
    if endpoint.partition(".")[0] in _OPEN_BLUEPRINTS or endpoint == "static":
        return PUBLIC
    view = app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, "get" if method == "HEAD" else method.lower(), None)
    return getattr(view, "_access", None)


def authenticate() -> None:
    """Before any view, any routing error and any validation: the caller's credentials.

    Unknown routes and methods under /api answer 401 to anonymous callers too, so nothing of
    the API's shape is told before authentication (SPEC §2)."""
    access = _declared_access(current_app, request.endpoint, request.method)
    if access == PUBLIC or (access is None and not request.path.startswith("/api/")):
        return
    caller = current_app.extensions["batchsvc"].verifier.verify(request.headers)
    g.principal = caller
    if access is not None:
        caller.require(access)


def current_principal() -> Principal:
    """The verified caller of this request (set by `authenticate`)."""
    return g.principal


def check_declarations(app: Flask) -> None:
    """Refuse to start when an operation declares no access."""
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            if _declared_access(app, rule.endpoint, method) is None:
                raise RuntimeError(f"{method} {rule.rule} declares no access: use @blp.requires(role) or @blp.public")
