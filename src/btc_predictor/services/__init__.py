"""Use cases shared by the CLI and the API (one module per concern)."""

from btc_predictor.services.ingest import (
    AssetStatus,
    BootstrapResult,
    IngestReport,
    bootstrap,
    data_status,
    ingest,
)
from btc_predictor.shapes.requests import IngestRequest

__all__ = [
    "AssetStatus",
    "BootstrapResult",
    "IngestReport",
    "IngestRequest",
    "bootstrap",
    "data_status",
    "ingest",
]
