"""Persisted jobs: the queue (use-case layer), job params, schedules, the per-kind handlers,
the worker loop and its side server."""
