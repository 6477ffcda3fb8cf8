"""Starlette routes that name themselves in the scope, as FastAPI's own routes do.

FastAPI's router sets ``scope["route"]`` only for its APIRoutes; the request metrics label
requests by ``scope["route"].path`` (the template), so plain routes and mounts say who they
are here, and their traffic is not counted as ``unmatched``.
"""

from __future__ import annotations

import copy

from fastapi import APIRouter
from fastapi.routing import APIRoute, iter_route_contexts
from starlette._utils import get_route_path  # the path routes match on (FastAPI uses it too)
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


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` value for the request's path: every method of every route on it."""
    path = get_route_path(scope)
    methods: set[str] = set()
    for context in iter_route_contexts(routes):
        regex = getattr(context, "path_regex", None)
        if context.methods and regex is not None and regex.match(path):
            methods |= context.methods
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def answer_head(router: APIRouter) -> APIRouter:
    """Let every GET route of ``router`` answer HEAD too (FastAPI's answer GET only, Starlette's
    both), through a twin hidden from the OpenAPI document so it lists each operation once.

    The twins go last, so they cost nothing to a GET; calling this again adds none.
    """
    routes = [r for r in router.routes if isinstance(r, APIRoute) and r.methods]
    heads = {r.path for r in routes if "HEAD" in (r.methods or ())}
    for route in routes:
        if "GET" in (route.methods or ()) and route.path not in heads:
            twin = copy.copy(route)
            twin.methods, twin.include_in_schema = {"HEAD"}, False
            router.routes.append(twin)
    return router


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
