"""Test databases: SQLite and PostgreSQL tuning, the cheaper flush, one
clone per worker slot, and the cleanup of an interrupted setup."""
