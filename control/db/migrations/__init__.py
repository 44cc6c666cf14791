"""Alembic migrations for the control-plane database (PostgreSQL and CockroachDB)."""
