"""The collector's own health as Prometheus metrics, read from its counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from flowsight.collector.writer import INSERT_BUCKETS, EventWriter


class CollectorHealth(Collector):
    """Yields writer and spool figures; no global mutable metrics."""

    def __init__(self, writer: EventWriter):
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        stats = self.writer.stats
        yield CounterMetricFamily(
            "flowsight_ingest_commits",
            "Commits (merged inserts) written to ClickHouse.",
            value=stats.commits,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_events_stored",
            "Lifecycle events inserted into ClickHouse.",
            value=stats.rows_inserted,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_duplicates",
            "Events dropped as already stored or repeated.",
            value=stats.duplicates,
        )
        yield CounterMetricFamily(
            "flowsight_spool_batches_written",
            "Batches spooled while ClickHouse was unreachable.",
            value=stats.spooled_batches,
        )
        yield CounterMetricFamily(
            "flowsight_spool_batches_drained",
            "Spooled batches later written to ClickHouse.",
            value=stats.drained_batches,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_commit_seconds",
            "Time spent in commits (dedup and inserts).",
            value=stats.commit_seconds,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_insert_seconds",
            "Time spent inserting into ClickHouse.",
            value=stats.insert_seconds,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_dedup_seconds", "Time spent deduplicating batches.", value=stats.dedup_seconds
        )
        yield CounterMetricFamily(
            "flowsight_store_failures",
            "Times ClickHouse could not be reached.",
            value=stats.store_failures,
        )
        yield CounterMetricFamily(
            "flowsight_ingest_rejected", "Rejected input kept as dead letters.", value=stats.dead_letters
        )
        cumulative, buckets = 0, []
        for bound, count in zip(INSERT_BUCKETS, stats.insert_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        yield HistogramMetricFamily(
            "flowsight_ingest_insert_duration_seconds",
            "Time each commit spent inserting into ClickHouse.",
            buckets=buckets,
            sum_value=stats.insert_seconds,
        )
        yield GaugeMetricFamily(
            "flowsight_spool_bytes",
            "Bytes waiting in the spool.",
            value=self.writer.spool.bytes_used,
        )
        yield GaugeMetricFamily(
            "flowsight_spool_capacity_bytes",
            "Spool capacity in bytes.",
            value=self.writer.spool.max_bytes,
        )
