"""Starlette routes that name themselves in the scope, as FastAPI's own routes do.

FastAPI's router sets ``scope["route"]`` only for its APIRoutes; the request metrics label
requests by ``scope["route"].path`` (the template), so plain routes and mounts say who they
are here, and their traffic is not counted as ``unmatched``.
"""

from __future__ import annotations

from starlette.routing import Match, Mount, Route
from starlette.types import Scope


class LabelledRoute(Route):
    """A plain route that records itself as the matched route."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, plus ``route`` in the child scope."""
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


class LabelledMount(Mount):
    """A mount (static files) that records itself: one label for everything below it."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, plus ``route`` in the child scope."""
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child
