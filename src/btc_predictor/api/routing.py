"""Starlette routes that name themselves in the scope, as FastAPI's own routes do.

FastAPI's router sets ``scope["route"]`` only for its APIRoutes; the request metrics label
requests by ``scope["route"].path`` (the template), so plain routes and mounts say who they
are here, and their traffic is not counted as ``unmatched``.
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope


def route_templates(routes: list[BaseRoute]) -> dict[int, str]:
    """``id(route)`` -> its full path template, also for routes of included routers (whose
    own ``path`` lacks the prefix they were included under)."""
    templates = {}
    for context in iter_route_contexts(routes):
        template = context.path_format or context.path
        if template:
            templates[id(context.original_route)] = template
    return templates


class _Labelled:
    """Adds ``route`` (the matched route itself) to the child scope of a match."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """The base class's match, plus ``route`` in the child scope."""
        match, child = super().matches(scope)  # type: ignore[misc]
        if match is not Match.NONE:
            child["route"] = self
        return match, child


class LabelledRoute(_Labelled, Route):
    """A plain route that records itself as the matched route."""


class LabelledMount(_Labelled, Mount):
    """A mount (static files) that records itself: one label for everything below it."""
