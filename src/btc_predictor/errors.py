"""Domain errors. No web framework here: the API and the CLI each map them once.

Tree (``code``: the API's machine-readable code; the CLI exits 2 for all of them)::

    BtcpError
    ├── InvalidInputError            invalid_parameter  bad flag, parameter or symbol
    │   └── DataFileError            invalid_parameter  unusable input file (file:line)
    ├── NotFoundError
    │   ├── AssetNotFoundError       asset_not_found
    │   ├── ModelNotFoundError       model_not_found
    │   └── JobNotFoundError         job_not_found
    ├── ConflictError
    │   ├── NoDataError              no_data             nothing ingested (says what to run)
    │   ├── NotEnoughDataError       no_data             too little history for the request
    │   ├── NoModelError             no_model
    │   ├── JobRunningError          job_running
    │   └── HorizonExceedsModelError horizon_exceeds_model
    ├── DataSourceError              source_error        an online source failed
    ├── ArtifactError                artifact_damaged    stored model fails its checksums
    └── UnavailableError             unavailable         database or model store unreachable
"""

from __future__ import annotations


class BtcpError(Exception):
    """Base of every error btc-predictor raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(BtcpError):
    """A parameter, flag or symbol is malformed or out of range."""

    code = "invalid_parameter"


class DataFileError(InvalidInputError):
    """An input file cannot be used; the message names the file and, where known, the line."""


class NotFoundError(BtcpError):
    """Something named by id or symbol does not exist."""


class AssetNotFoundError(NotFoundError):
    """The asset is neither tracked nor stored."""

    code = "asset_not_found"


class ModelNotFoundError(NotFoundError):
    """No model kind or version by that name or id."""

    code = "model_not_found"


class JobNotFoundError(NotFoundError):
    """No job with that id."""

    code = "job_not_found"


class ConflictError(BtcpError):
    """The current state prevents the request; the message says what to run first."""

    code = "conflict"


class NoDataError(ConflictError):
    """No candles are stored for the asset."""

    code = "no_data"


class NotEnoughDataError(NoDataError):
    """Some candles are stored, but too few for what was asked."""


class NoModelError(ConflictError):
    """No trained model version is available."""

    code = "no_model"


class JobRunningError(ConflictError):
    """An equivalent job is already queued or running."""

    code = "job_running"


class HorizonExceedsModelError(ConflictError):
    """The requested horizon is longer than the model was trained for."""

    code = "horizon_exceeds_model"


class DataSourceError(BtcpError):
    """An online market-data source failed or answered with something unusable."""

    code = "source_error"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ArtifactError(BtcpError):
    """A stored model artifact is missing, damaged or fails its checksum."""

    code = "artifact_damaged"


class UnavailableError(BtcpError):
    """The database or the model store cannot be reached."""

    code = "unavailable"
