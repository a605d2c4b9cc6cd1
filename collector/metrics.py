"""The collector's own health as Prometheus metrics, read from its counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from flowsight.collector.writer import FSYNC_BUCKETS, EventWriter


class CollectorHealth(Collector):
    """Yields the writer's, the write-ahead log's and the loader's figures; no global mutable metrics."""

    def __init__(self, writer: EventWriter):
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        writer, loader, wal = self.writer, self.writer.loader, self.writer.wal
        stats, loaded = writer.stats, loader.stats
        counters = [
            ("flowsight_ingest_commits", "Group commits: records appended to the write-ahead log and fsynced.", stats.commits),
            ("flowsight_ingest_events_logged", "Lifecycle events accepted (fsynced in the write-ahead log).", stats.events_logged),
            ("flowsight_ingest_spans_logged", "Spans accepted (fsynced in the write-ahead log).", stats.spans_logged),
            ("flowsight_ingest_duplicates", "Events dropped as seen before or repeated.", stats.duplicates),
            ("flowsight_ingest_rejected", "Rejected input kept as dead letters.", stats.dead_letters),
            ("flowsight_ingest_refused_batches", "Batches answered 503 because the write-ahead log could not take them.", stats.refused),
            ("flowsight_ingest_dedup_seconds", "Time spent deduplicating batches.", stats.dedup_seconds),
            ("flowsight_ingest_commit_seconds", "Time spent appending to the write-ahead log and fsyncing it.", stats.commit_seconds),
            ("flowsight_ingest_events_stored", "Lifecycle events the loader inserted into ClickHouse.", loaded.events_loaded),
            ("flowsight_loader_spans_stored", "Spans the loader inserted into ClickHouse.", loaded.spans_loaded),
            ("flowsight_loader_dead_letters_stored", "Dead letters the loader inserted into ClickHouse.", loaded.dead_letters_loaded),
            ("flowsight_loader_inserts", "Inserts the loader made into ClickHouse.", loaded.inserts),
            ("flowsight_loader_insert_seconds", "Time the loader spent in inserts.", loaded.insert_seconds),
            ("flowsight_loader_records", "Write-ahead log records loaded into ClickHouse.", loaded.records_loaded),
            ("flowsight_loader_retries", "Failed inserts the loader retried.", loaded.retries),
            ("flowsight_loader_rows_refused", "Rows ClickHouse refused for their content, kept as dead letters.", loaded.rows_refused),
            ("flowsight_loader_rows_already_stored", "Rows found already in ClickHouse when a record was loaded again.", loaded.already_stored),
        ]  # fmt: skip
        for name, help_text, value in counters:
            yield CounterMetricFamily(name, help_text, value=value)
        cumulative, buckets = 0, []
        for bound, count in zip(FSYNC_BUCKETS, stats.commit_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        yield HistogramMetricFamily(
            "flowsight_wal_commit_duration_seconds",
            "Time each group commit spent appending to the write-ahead log and fsyncing it.",
            buckets=buckets,
            sum_value=stats.commit_seconds,
        )
        gauges = [
            ("flowsight_wal_bytes", "Bytes of write-ahead log records not yet loaded into ClickHouse (what wal_max_bytes bounds).", wal.unloaded_bytes),
            ("flowsight_wal_disk_bytes", "Bytes of the write-ahead log's segment files on disk.", wal.bytes_used),
            ("flowsight_wal_capacity_bytes", "Write-ahead log capacity in bytes.", wal.max_bytes),
            ("flowsight_wal_segments", "Write-ahead log segment files.", wal.segments),
            ("flowsight_loader_lag_seconds", "How long the oldest acknowledged record not yet in ClickHouse has waited.", loader.lag_seconds()),
            ("flowsight_loader_waiting_rows", "Acknowledged rows not yet in ClickHouse.", loader.waiting_rows),
            ("flowsight_loader_failing", "1 while the loader retries a failed insert.", int(loaded.failing_since is not None)),
            ("flowsight_dedup_ids", "Event ids in the dedup filter (the window's).", len(writer.seen)),
            ("flowsight_dedup_span_ids", "Span ids in the dedup filter (the window's).", len(writer.seen_spans)),
        ]  # fmt: skip
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
