"""The web dashboard: static files served under ``/ui`` (no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from btc_predictor.api.routing import LabelledMount

# DESIGN §9: the dashboard's static assets live in the package's web/ folder.
UI_DIR = Path(__file__).resolve().parents[2] / "web"
# The page loads only its own files (no inline script or style), and no other site may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class Secured:
    """Pure ASGI wrapper: the dashboard's security headers on every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the exchange through, adding the headers to the response start."""

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_RAW_HEADERS]
            await send(message)

        await self.app(scope, receive, secured)


router = APIRouter(include_in_schema=False)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_root() -> RedirectResponse:
    """``/ui`` → ``/ui/`` so the page's relative asset paths resolve under ``/ui/``."""
    # Relative, so it stays right behind a reverse proxy that adds a path prefix.
    return RedirectResponse("ui/", status_code=307, headers=SECURITY_HEADERS)


def mount(app: FastAPI) -> None:
    """Serve the dashboard: ``/ui`` redirects, ``/ui/`` is index.html, assets below it."""
    app.include_router(router)
    # Labelled: request metrics count every dashboard file under one template, `/ui/{path}`.
    files = Secured(StaticFiles(directory=UI_DIR, html=True))
    app.router.routes.append(LabelledMount("/ui", app=files, name="ui"))
