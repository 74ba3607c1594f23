"""Metadata store: SQLAlchemy Core over SQLite or PostgreSQL, migrated by Alembic."""
