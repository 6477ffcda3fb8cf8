"""Pure forecasting core: never touches the database, HTTP, environment or disk."""
