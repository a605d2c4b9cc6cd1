"""The composition root: builds the services from settings and wires them into one FastAPI app."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from flowsight import migrations, selftrace
from flowsight.alerts import schema as alerts_schema
from flowsight.alerts.api import router as alerts_router
from flowsight.alerts.dispatch import Dispatcher, NotificationLog, Receiver
from flowsight.alerts.engine import AlertEngine
from flowsight.alerts.loading import DEFAULT_RULES, load_rules
from flowsight.alerts.metrics import AlertMetrics
from flowsight.alerts.model import RuleSet
from flowsight.alerts.notifiers import AlertmanagerNotifier, SlackNotifier, WebhookNotifier
from flowsight.alerts.silences import SilenceStore
from flowsight.alerts.state import AlertStateStore
from flowsight.auth import AuthMiddleware, RateLimiter, TokenSet
from flowsight.clock import Clock, system_clock
from flowsight.collector import ndjson_scan, otlp_wire, seen_ids
from flowsight.collector import schema as collector_schema
from flowsight.collector.api import error_response, json_response
from flowsight.collector.api import router as collector_router
from flowsight.collector.dead_letters import DeadLetterStore
from flowsight.collector.events import EventLimits
from flowsight.collector.ingest import EventIngestor
from flowsight.collector.loader import Loader, NotYetLoaded
from flowsight.collector.metrics import CollectorHealth
from flowsight.collector.order_figures import OrderFigures, SliCounts
from flowsight.collector.otlp_api import router as otlp_router
from flowsight.collector.otlp_ingest import OtlpIngestor
from flowsight.collector.seen_ids import fingerprints
from flowsight.collector.system_figures import SystemFigures
from flowsight.collector.timeline import TimelineReader
from flowsight.collector.wal import WriteAheadLog
from flowsight.collector.writer import EventWriter
from flowsight.configfiles import load_tokens, load_topology, load_workflows
from flowsight.dashboards.feed import EvaluationFeed, Feed
from flowsight.dashboards.feed import router as feed_router
from flowsight.dashboards.pages import STATIC
from flowsight.dashboards.pages import router as pages_router
from flowsight.ddl import Schema
from flowsight.login import router as login_router
from flowsight.migrations import Migration
from flowsight.settings import Settings
from flowsight.slo import schema as slo_schema
from flowsight.slo.api import router as slo_router
from flowsight.slo.engine import SloEngine
from flowsight.slo.evaluator import Evaluator
from flowsight.slo.flow import FlowHealth
from flowsight.slo.loading import DEFAULT_SLOS, load_slos
from flowsight.slo.metrics import EvaluationMetrics
from flowsight.slo.model import SloCatalog
from flowsight.slo.snapshots import FlowHistory, SnapshotStore
from flowsight.store import Store
from flowsight.topology import DEFAULT_TOPOLOGY, Topology
from flowsight.workflows import DEFAULT_WORKFLOWS, WorkflowCatalog

log = logging.getLogger(__name__)

MIGRATIONS: list[Migration] = [
    *collector_schema.MIGRATIONS,
    *slo_schema.MIGRATIONS,
    *alerts_schema.MIGRATIONS,
]
"""Every package's migrations, in the order they apply."""


def schema_of(settings: Settings) -> Schema:
    return Schema(settings.database, settings.cluster)


def load_catalog(settings: Settings) -> WorkflowCatalog:
    return load_workflows(settings.workflows_file) if settings.workflows_file else DEFAULT_WORKFLOWS


def load_topology_of(settings: Settings) -> Topology:
    return load_topology(settings.topology_file) if settings.topology_file else DEFAULT_TOPOLOGY


@dataclass
class Services:
    """Everything the app runs, built once per process."""

    settings: Settings
    store: Store
    schema: Schema
    catalog: WorkflowCatalog
    topology: Topology
    slos: SloCatalog
    writer: EventWriter
    loader: Loader
    ingestor: EventIngestor
    otlp: OtlpIngestor
    evaluator: Evaluator
    rules: RuleSet
    alerts: AlertEngine
    silences: SilenceStore
    dispatcher: Dispatcher | None
    feed: Feed
    timelines: TimelineReader
    dead_letters: DeadLetterStore
    clock: Clock
    owns_store: bool = True
    tokens: TokenSet | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _scheduler: Any = None

    def start(self) -> None:
        migrations.migrate(self.store, self.schema, MIGRATIONS)
        self.alerts.list()  # the alert state, read while the database answers (scrapes need it)
        self.writer.load_seen()
        self.writer.recover()
        self.loader.start()
        self.writer.start()
        interval = self.settings.evaluation_interval_seconds
        if interval > 0 and self.settings.role != "collector":
            from apscheduler.schedulers.background import BackgroundScheduler

            self._scheduler = BackgroundScheduler(timezone="UTC")
            self._scheduler.add_job(
                self.evaluator.run_scheduled,
                "interval",
                seconds=interval,
                id="evaluate",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),  # the first evaluation at start, then every interval
            )
            self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.writer.stop()
        if not self.loader.stop():
            log.warning(
                "stopping with records not yet loaded: they stay in the write-ahead log for the next start"
            )
        self.writer.wal.close()
        self.ingestor.close()
        if self.loader.store is not self.store:
            self.loader.store.close()
        if self.owns_store:
            self.store.close()

    def caught_up(self) -> None:
        """Return once every event acknowledged before the call is in ClickHouse.

        Raises:
            NotYetLoaded: not within ``read_after_write_timeout_seconds``.
        """
        self.loader.wait_all(self.settings.read_after_write_timeout_seconds)

    def order_loaded(self, correlation_id: str) -> None:
        """Return once the acknowledged events of one order are in ClickHouse.

        Raises:
            NotYetLoaded: not within ``read_after_write_timeout_seconds``.
        """
        self.loader.wait_for(correlation_id, self.settings.read_after_write_timeout_seconds)


def event_limits(settings: Settings) -> EventLimits:
    return EventLimits(
        max_id_chars=settings.max_id_chars,
        max_channel_chars=settings.max_channel_chars,
        max_attributes=settings.max_attributes_per_event,
        max_attribute_key_chars=settings.max_attribute_key_chars,
        max_attribute_value_chars=settings.max_attribute_value_chars,
        max_future_ms=settings.max_future_seconds * 1000,
    )


def open_store(settings: Settings) -> Store:
    """The database the settings name (DSN, database, cluster, the embedded engine's merge priority)."""
    return Store.connect(
        settings.dsn,
        settings.database,
        cluster=settings.cluster is not None,
        merge_nice=settings.engine_merge_nice,
    )


def build_services(settings: Settings, *, store: Store | None = None, clock: Clock | None = None) -> Services:
    """Build (but do not start) the services; ``store`` and ``clock`` may be injected."""
    catalog = load_catalog(settings)
    topology = load_topology_of(settings)
    tokens = load_tokens(settings.tokens_file) if settings.tokens_file else None
    owns_store = store is None
    if store is None:
        store = open_store(settings)
    clock = clock or system_clock
    schema = schema_of(settings)
    wal = WriteAheadLog(settings.wal_path, settings.wal_max_bytes, settings.wal_segment_bytes)
    loader = Loader(
        # Its own handle: on the embedded engine, reads would otherwise queue behind its inserts.
        store.another() if owns_store else store,
        schema,
        wal,
        batch_rows=settings.write_batch_rows,
        linger_seconds=settings.load_linger_ms / 1000,
        retry_seconds=settings.load_retry_seconds,
        retry_max_seconds=settings.load_retry_max_seconds,
    )
    writer = EventWriter(
        store,
        schema,
        wal,
        loader,
        clock,
        dedup_window_ms=int(settings.dedup_window.total_seconds() * 1000),
        batch_rows=settings.write_batch_rows,
        # Several commits' worth may wait; beyond that senders get 503 and Retry-After.
        max_pending_rows=max(settings.write_batch_rows * 4, settings.max_events_per_request),
    )
    if not settings.embedded:  # one process owns an embedded database; on a server others write too
        loader.housekeeping = every(settings.dedup_refresh_seconds, writer.refresh_seen)
    dead = DeadLetterStore(store, schema)
    slos = load_slos(settings.slos_file, catalog) if settings.slos_file else DEFAULT_SLOS
    rules = (
        load_rules(settings.alert_rules_file, catalog, slos) if settings.alert_rules_file else DEFAULT_RULES
    )
    dispatcher = build_dispatcher(settings, store, schema, clock)
    silences = SilenceStore(store, schema)
    feed = Feed()
    alerts = AlertEngine(
        rules=lambda: services.rules,
        slos=lambda: services.slos,
        catalog=lambda: services.catalog,
        topology=lambda: services.topology,
        activity=SystemFigures(store, schema),
        state=AlertStateStore(store, schema),
        silences=silences,
        dispatcher=dispatcher,
        clock=clock,
    )
    services = Services(
        settings=settings,
        tokens=tokens,
        store=store,
        schema=schema,
        catalog=catalog,
        topology=topology,
        slos=slos,
        writer=writer,
        loader=loader,
        ingestor=EventIngestor(
            writer,
            dead,
            lambda: services.catalog,
            clock,
            max_events=settings.max_events_per_request,
            limits=event_limits(settings),
            validation_threads=settings.validation_pool_size,
        ),
        otlp=OtlpIngestor(
            writer, lambda: services.catalog, clock, settings.correlation_keys, event_limits(settings)
        ),
        evaluator=Evaluator(
            SloEngine(SliCounts(store, schema)),
            FlowHealth(OrderFigures(store, schema)),
            SnapshotStore(store, schema),
            lambda: services.slos,
            lambda: services.catalog,
            clock,
            followers={"alerts": alerts.evaluate, "feed": EvaluationFeed(feed, alerts.list)},
            history=FlowHistory(store, schema),
            caught_up=lambda: services.caught_up(),
        ),
        rules=rules,
        alerts=alerts,
        silences=silences,
        dispatcher=dispatcher,
        feed=feed,
        timelines=TimelineReader(store, schema),
        dead_letters=dead,
        clock=clock,
        owns_store=owns_store,
    )
    services.registry.register(CollectorHealth(writer))
    services.registry.register(EvaluationMetrics(services.evaluator))
    services.registry.register(AlertMetrics(alerts, dispatcher))
    return services


def every(seconds: float, job: Callable[[], None]) -> Callable[[], None]:
    """``job``, run at most once every ``seconds`` however often the result is called."""
    due = [0.0]

    def run() -> None:
        if time.monotonic() >= due[0]:
            due[0] = time.monotonic() + seconds
            job()

    return run


def build_dispatcher(settings: Settings, store: Store, schema: Schema, clock: Clock) -> Dispatcher | None:
    """The configured receivers (Alertmanager, webhook, Slack); None when there are none."""
    timeout = settings.notify_timeout_seconds

    def grouped(notifier: WebhookNotifier | SlackNotifier) -> Receiver:
        return Receiver(
            notifier,
            group_by=tuple(settings.alert_group_by),
            group_wait=timedelta(seconds=settings.alert_group_wait_seconds),
            group_interval=timedelta(seconds=settings.alert_group_interval_seconds),
            repeat_interval=timedelta(seconds=settings.alert_repeat_interval_seconds),
        )

    receivers: list[Receiver] = []
    if settings.alertmanager_url:
        # As Prometheus does: firing alerts expire in Alertmanager 4 evaluations after the last send.
        ttl = timedelta(seconds=4 * max(60.0, settings.evaluation_interval_seconds))
        receivers.append(
            Receiver(AlertmanagerNotifier(settings.alertmanager_url, ttl, timeout_s=timeout), grouped=False)
        )
    if settings.alert_webhook_url:
        receivers.append(grouped(WebhookNotifier(settings.alert_webhook_url, timeout_s=timeout)))
    if settings.slack_webhook_url:
        receivers.append(grouped(SlackNotifier(settings.slack_webhook_url, timeout_s=timeout)))
    if not receivers:
        return None
    return Dispatcher(
        receivers,
        NotificationLog(store, schema),
        external_url=settings.external_url,
        retry_attempts=settings.notify_retry_attempts,
        retry_base_s=settings.notify_retry_base_seconds,
        clock=clock,
    )


def _compile_scanners(done: threading.Event) -> None:
    try:
        ndjson_scan.compile_scanner()
        otlp_wire.compile_scanner()
        fingerprints(["compiled"])
        seen_ids.compile_lookup()
    except Exception:  # requests still compile on first use; readiness must not wait forever
        log.exception("compiling the scanners failed")
    finally:
        done.set()


def create_app(services: Services, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The FastAPI app over built services; starting it applies migrations and starts the writer."""
    shutdown_tracing: list[Any] = []

    compiled = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The compiled scanners are built (or loaded from numba's cache) aside while the service
        # starts (migrations, the dedup filter), and /readyz waits for them: a request that came
        # first would wait for them, and the service would be ready at a fraction of its speed.
        threading.Thread(
            target=_compile_scanners, args=(compiled,), name="flowsight-compile", daemon=True
        ).start()
        services.start()
        # What start-up built (modules, routes, settings, the dedup filter) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise walk it each time.
        gc.freeze()
        try:
            yield
        finally:
            services.stop()
            for hook in shutdown_tracing:
                hook()

    app = FastAPI(
        title="flowsight",
        version="0.1.0",
        summary="Business-SLO monitoring for retail workflows",
        lifespan=lifespan,
    )
    shutdown_tracing.append(selftrace.install(app, services.settings))
    settings = services.settings
    app.add_middleware(
        AuthMiddleware,
        tokens=services.tokens,
        limiter=RateLimiter(settings.rate_limit_requests_per_second, settings.rate_limit_burst),
    )
    app.include_router(login_router(services.tokens))
    ingests = settings.role != "evaluator"
    app.include_router(
        collector_router(
            services.ingestor,
            services.timelines,
            services.dead_letters,
            lambda: services.catalog,
            services.clock,
            max_body_bytes=settings.max_body_bytes,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            retry_after_seconds=settings.retry_after_seconds,
            ingest=ingests,
            loaded=services.order_loaded,
            caught_up=services.caught_up,
        )
    )
    if ingests:
        app.include_router(
            otlp_router(
                services.otlp,
                max_body_bytes=settings.max_body_bytes,
                max_decompressed_bytes=settings.max_decompressed_bytes,
                retry_after_seconds=settings.retry_after_seconds,
            )
        )

    app.include_router(
        slo_router(
            OrderFigures(services.store, services.schema),
            lambda: services.catalog,
            services.clock,
            services.evaluator.engine,
            lambda: services.slos,
            services.evaluator,
            evaluates=settings.role != "collector",
            caught_up=services.caught_up,
        )
    )
    app.include_router(alerts_router(services.alerts, services.silences, services.clock))
    app.include_router(feed_router(services.feed))
    app.include_router(
        pages_router(
            services.evaluator,
            services.alerts,
            services.silences,
            services.timelines,
            FlowHistory(services.store, services.schema),
            lambda: services.slos,
            lambda: services.catalog,
            services.clock,
        )
    )
    for extra in extra_routers:
        app.include_router(extra)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NotYetLoaded)
    def not_yet_loaded(_: Request, exc: NotYetLoaded) -> Response:
        return error_response(503, f"{exc}; retry later", settings.retry_after_seconds)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Migrations applied, write-ahead log not full, scanners compiled (and, for an "
        "evaluator, the database reachable)",
    )
    def readyz() -> Response:
        reachable = services.store.ping()
        missing = migrations.pending(services.store, services.schema, MIGRATIONS) if reachable else []
        wal, loader = services.writer.wal, services.loader
        wal_full = wal.is_full()
        scanners = compiled.is_set()
        # A collector takes traffic while the database is away: its write-ahead log holds what it
        # acknowledges until the database is back, which is what it is for. An evaluator cannot.
        ready = (reachable or ingests) and not missing and not wal_full and scanners
        body = {
            "status": "ready" if ready else "not ready",
            "database_reachable": reachable,
            "pending_migrations": missing,
            "wal_bytes": wal.unloaded_bytes,
            "wal_full": wal_full,
            "loader_lag_seconds": round(loader.lag_seconds(), 3),
            "loader_error": loader.stats.last_error,
            "scanners_compiled": scanners,
        }
        return json_response(body, 200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus exposition", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST)

    return app
