"""CPU per request of the app's hot paths, driven in-process through ASGI (no sockets).

Usage::

    BTCP_DATA_DIR=/tmp/apibench/data python bench/asgi_cost.py [--requests 20000]

A development aid next to ``api_load.py``: wrk measures the whole server but is noisy on a
shared 2-core machine; this measures only the application's own CPU per request (process
time, so other load barely moves it), for the product app and for the reference app (one
``async def`` returning a constant), each behind the same request loop. The data dir must
hold data and an active model (``api_load.py`` prepares one).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from btc_predictor.api.app import create_app
from btc_predictor.config import get_settings
from btc_predictor.logs import configure_logging

Receive = Callable[[], Awaitable[dict[str, Any]]]


def reference() -> FastAPI:
    """The benchmark's reference: one async endpoint returning a constant."""
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        """A constant answer: the cheapest FastAPI endpoint."""
        return {"status": "ok"}

    return app


async def drive(app: Any, path: str, n: int) -> float:
    """Microseconds of process CPU per request over ``n`` GETs of ``path``."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        """An empty GET body."""
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        """Keep the status; the body is discarded."""
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # warm caches (first forecast, route tables)
        await app(dict(scope), receive, send)
    started = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    elapsed = time.process_time() - started
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{path}: {len(bad)} non-200 answers, e.g. {bad[0]}")
    return elapsed / n * 1e6


async def main_async(n: int, rounds: int) -> None:
    """Measure every path ``rounds`` times and print the medians."""
    settings = get_settings()
    configure_logging(settings)
    handler = logging.getLogger("btc_predictor").handlers[0]
    if not isinstance(handler, logging.StreamHandler):
        raise SystemExit(f"expected configure_logging to install a stream handler, got {handler}")
    handler.stream = open("/dev/null", "w")  # noqa: SIM115 - the cost of formatting + write stays
    product = create_app(settings)
    ref = reference()
    async with product.router.lifespan_context(product):
        cases = {
            "reference /": (ref, "/"),
            "/predict": (product, "/predict"),
            "/api/v1/forecast?horizon=7": (product, "/api/v1/forecast?horizon=7"),
            "/health/live": (product, "/health/live"),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (app, path) in cases.items():
                results[name].append(await drive(app, path, n))
    base = statistics.median(results["reference /"])
    print(f"{'path':32} {'µs CPU/request':>15} {'x reference':>12}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:32} {median:15.1f} {median / base:12.2f}")


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.rounds))


if __name__ == "__main__":
    main()
