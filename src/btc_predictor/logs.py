"""Logging setup: human text or one JSON object per line (``BTCP_LOG_FORMAT``)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from btc_predictor.config import Settings


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (extra ``fields`` are merged in)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object string."""
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Route btc_predictor's logs to stderr in the configured format."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("btc_predictor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
