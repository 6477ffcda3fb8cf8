"""Use cases shared by the CLI, the API and the jobs (one module per concern)."""
