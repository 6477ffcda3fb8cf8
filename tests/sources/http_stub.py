"""A loopback HTTP stub for source adapters: routes, one-shot queued responses, a request log."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# (status, body, headers); a str body is sent as text/plain, anything else as JSON.
Reply = tuple[int, Any, dict[str, str]]
Handler = Callable[[dict[str, str], str], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: timeout tests hang up before the reply is written (broken pipe)."""


@dataclass(frozen=True)
class Seen:
    """One request the stub received."""

    path: str
    query: dict[str, str]


class HttpStub:
    """Serves ``route``d handlers on 127.0.0.1 (port 0) in a daemon thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.queued: defaultdict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str, handler: Handler) -> None:
        """Answer every request to ``path`` with ``handler(query, path)``."""
        self.routes[path] = handler

    def queue(
        self, path: str, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next request to ``path`` once with this reply (before its route)."""
        self.queued[path].append((status, body, headers or {}))

    def seen(self, path: str) -> list[dict[str, str]]:
        """The query of every request made to ``path``, in order."""
        return [r.query for r in self.requests if r.path == path]

    def start(self) -> HttpStub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reply(self, path: str, query: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Seen(path, query))
            if self.queued[path]:
                return self.queued[path].popleft()
        handler = self.routes.get(path)
        return handler(query, path) if handler else (404, {"error": f"no route {path}"}, {})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, body, headers = stub._reply(parts.path, dict(parse_qsl(parts.query)))
                is_text = isinstance(body, str)
                data = (body if is_text else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if is_text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                pass

        return _Handler
