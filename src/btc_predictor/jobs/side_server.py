"""The worker's HTTP side server: ``/health/live`` and ``/metrics`` on BTCP_WORKER_PORT."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.exposition import choose_encoder

from btc_predictor.telemetry import scrape_registry

log = logging.getLogger(__name__)


def _side_handler(worker_id: str, metrics_dir: Path | None) -> type[BaseHTTPRequestHandler]:
    """The request handler class of the worker's side server."""

    class SideHandler(BaseHTTPRequestHandler):
        """``GET /health/live`` and ``GET /metrics``; everything else is 404."""

        def do_GET(self) -> None:
            """Answer liveness or the Prometheus exposition."""
            path = self.path.split("?", 1)[0]
            if path == "/health/live":
                body = json.dumps({"status": "ok", "worker_id": worker_id}).encode()
                self._send(200, "application/json", body)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(scrape_registry(metrics_dir)))
            else:
                body = json.dumps({"detail": f"no route {path}", "code": "not_found"}).encode()
                self._send(404, "application/json", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            """Write a complete response."""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Access lines go to debug logging, not stderr."""
            log.debug("side server: " + format, *args)

    return SideHandler


class SideServer:
    """The worker's HTTP side server on a daemon thread; ``port`` is the bound port."""

    def __init__(
        self,
        worker_id: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        metrics_dir: Path | None = None,
    ) -> None:
        handler = _side_handler(worker_id, metrics_dir)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
