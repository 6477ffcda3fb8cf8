"""Persistence: engine/session factory, tables, repository functions."""
