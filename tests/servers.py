"""Fixtures for real servers: PostgreSQL (initdb + pg_ctl) and an S3 endpoint (moto)."""
