"""Attacks on a running platform (issue 10): one module per finding, real broker, ingest and database."""
