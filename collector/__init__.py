"""Ingestion: the lifecycle-event API, validation, dedup, dead letters, the write-ahead log and
its loader, and the ClickHouse tables they own."""
