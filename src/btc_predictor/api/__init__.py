"""HTTP API (FastAPI): ``create_app(settings)`` builds it; nothing is created at import time."""
