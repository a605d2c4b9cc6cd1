"""Ingestion: the lifecycle-event API, validation, dedup, dead letters, the durable spool and
the ClickHouse tables they own."""
