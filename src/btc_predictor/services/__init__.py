"""Use cases shared by the CLI and the API (one module per concern)."""

from btc_predictor.services.ingest import (
    AssetStatus,
    BootstrapResult,
    IngestReport,
    IngestRequest,
    bootstrap,
    data_status,
    ingest,
)

__all__ = [
    "AssetStatus",
    "BootstrapResult",
    "IngestReport",
    "IngestRequest",
    "bootstrap",
    "data_status",
    "ingest",
]
