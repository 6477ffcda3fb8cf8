"""The web dashboard: static files served under ``/ui`` (no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from btc_predictor.api.routing import LabelledMount

# DESIGN §9: the dashboard's static assets live in the package's web/ folder.
UI_DIR = Path(__file__).resolve().parents[2] / "web"

router = APIRouter(include_in_schema=False)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_root() -> RedirectResponse:
    """``/ui`` → ``/ui/`` so the page's relative asset paths resolve under ``/ui/``."""
    # Relative, so it stays right behind a reverse proxy that adds a path prefix.
    return RedirectResponse("ui/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the dashboard: ``/ui`` redirects, ``/ui/`` is index.html, assets below it."""
    app.include_router(router)
    # Labelled: request metrics count every dashboard file under one template, `/ui/{path}`.
    files = StaticFiles(directory=UI_DIR, html=True)
    app.router.routes.append(LabelledMount("/ui", app=files, name="ui"))
