"""The API key: from BTCP_API_KEY, or generated once into the data dir (SQLite only)."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError

log = logging.getLogger(__name__)
KEY_FILE = "api_key"


def resolve_api_key(settings: Settings) -> str:
    """The configured key; on SQLite without one, the data dir's key file (created if absent)."""
    if settings.api_key:
        return settings.api_key
    if make_url(settings.resolved_database_url).get_backend_name() != "sqlite":
        raise InvalidInputError(
            "BTCP_API_KEY is required when the database is PostgreSQL (refusing to start)"
        )
    return _key_file(settings.data_dir / KEY_FILE)


def _key_file(path: Path) -> str:
    """Read the key file, or create it exclusively with mode 0600 (first process wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    with os.fdopen(handle, "w") as stream:
        stream.write(key + "\n")
    log.warning("generated an API key for mutating endpoints: %s", path.resolve())
    return key


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
