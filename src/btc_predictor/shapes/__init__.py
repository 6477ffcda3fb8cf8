"""Request and result shapes (pydantic), defined once and shared by services, API, CLI and jobs.

Imports only the ground floor, so an HTTP client can use them without SQLAlchemy or ONNX Runtime.
"""
