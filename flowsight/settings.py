"""Service settings: one model, read from ``FLOWSIGHT_*`` environment variables and an optional YAML file.

Precedence, highest first: command-line flags (applied by the CLI), environment variables, the
YAML file named by ``FLOWSIGHT_CONFIG`` (or ``--config``), then the defaults below. Every field
documents its default and unit; ``flowsight settings`` prints them all.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowsight.durations import parse_duration
from flowsight.merge_priority import DEFAULT_NICE as DEFAULT_MERGE_NICE

DEFAULT_CORRELATION_KEYS = ("order.id", "order_id", "correlation.id", "app.order.id")
MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be told, with its default and unit."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWSIGHT_", extra="forbid", frozen=True, validate_default=True
    )

    # -- server ---------------------------------------------------------------------------
    host: str = Field(
        "127.0.0.1",
        description="Address the HTTP server binds. Default 127.0.0.1. Env FLOWSIGHT_HOST.",
    )
    port: int = Field(
        4318,
        ge=0,
        le=65535,
        description="TCP port of the HTTP API and the OTLP receiver. Default 4318, the OTLP/HTTP "
        "port, so an OpenTelemetry SDK's default endpoint reaches flowsight. Env FLOWSIGHT_PORT.",
    )
    # -- storage --------------------------------------------------------------------------
    data_dir: Path = Field(
        Path("./flowsight-data"),
        description="Directory for the embedded database and the write-ahead log. Default ./flowsight-data. "
        "Env FLOWSIGHT_DATA_DIR.",
    )
    clickhouse_dsn: str | None = Field(
        None,
        description="ClickHouse DSN: chdb://<dir> (embedded) or http(s)://user:pass@host:8123. "
        "Default chdb://<data_dir>/clickhouse. Env FLOWSIGHT_CLICKHOUSE_DSN.",
    )
    database: str = Field(
        "flowsight",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="ClickHouse database holding every flowsight table. Default flowsight. "
        "Env FLOWSIGHT_DATABASE.",
    )
    cluster: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$",
        description="ClickHouse cluster name; when set, DDL runs ON CLUSTER with Replicated engines "
        "and Distributed tables. Default none (single node). Env FLOWSIGHT_CLUSTER.",
    )
    # -- ingest ---------------------------------------------------------------------------
    max_body_bytes: int = Field(
        16 * MiB,
        gt=0,
        description="Largest request body accepted as sent (compressed), in bytes; larger gets 413. "
        "Default 16 MiB. Env FLOWSIGHT_MAX_BODY_BYTES.",
    )
    max_decompressed_bytes: int = Field(
        64 * MiB,
        gt=0,
        description="Largest request body after gzip decompression, in bytes; larger gets 413 "
        "without inflating the rest. Default 64 MiB. Env FLOWSIGHT_MAX_DECOMPRESSED_BYTES.",
    )
    max_events_per_request: int = Field(
        50_000,
        gt=0,
        description="Most lifecycle events in one request; more gets 413. Default 50000. "
        "Env FLOWSIGHT_MAX_EVENTS_PER_REQUEST.",
    )
    max_attributes_per_event: int = Field(
        64,
        gt=0,
        description="Most attributes one lifecycle event may carry; more rejects the event. Default 64. "
        "Env FLOWSIGHT_MAX_ATTRIBUTES_PER_EVENT.",
    )
    max_id_chars: int = Field(
        128,
        gt=0,
        description="Longest event_id and correlation_id, in characters. Default 128. Env FLOWSIGHT_MAX_ID_CHARS.",
    )
    max_channel_chars: int = Field(
        64, gt=0, description="Longest channel, in characters. Default 64. Env FLOWSIGHT_MAX_CHANNEL_CHARS."
    )
    max_attribute_key_chars: int = Field(
        128,
        gt=0,
        description="Longest attribute key, in characters. Default 128. Env FLOWSIGHT_MAX_ATTRIBUTE_KEY_CHARS.",
    )
    max_attribute_value_chars: int = Field(
        4096,
        gt=0,
        description="Longest attribute value, in characters. Default 4096. "
        "Env FLOWSIGHT_MAX_ATTRIBUTE_VALUE_CHARS.",
    )
    max_future_seconds: int = Field(
        3600,
        ge=0,
        description="How far ahead of the service's clock occurred_at may be, in seconds (sender clock "
        "skew); later rejects the event. Default 3600 s. Env FLOWSIGHT_MAX_FUTURE_SECONDS.",
    )
    write_batch_rows: int = Field(
        50_000,
        gt=0,
        description="Most rows in one write-ahead log record (requests waiting at the same time "
        "share a record and its fsync) and in one ClickHouse insert of the loader. Default 50000 "
        "rows. Env FLOWSIGHT_WRITE_BATCH_ROWS.",
    )
    validation_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Threads that decode and validate large NDJSON request bodies. Default: one "
        "less than the cores this process may run on, at least 1, so a core stays free for the "
        "writer, which every acknowledgement waits for. Env FLOWSIGHT_VALIDATION_THREADS.",
    )
    engine_merge_nice: int = Field(
        DEFAULT_MERGE_NICE,
        ge=0,
        le=19,
        description="Linux niceness of the embedded database's background merge threads: merges "
        "can wait, inserts and queries cannot, and merges still use any core left idle. The same "
        "as a ClickHouse server's os_threads_nice_value_merge_mutate; for a server DSN, set that "
        "there. 0 leaves them at the service's priority. Default 10. Env FLOWSIGHT_ENGINE_MERGE_NICE.",
    )
    dedup_refresh_seconds: float = Field(
        5.0,
        gt=0,
        description="On a shared ClickHouse server, seconds between reads of the event ids other "
        "collectors stored, for deduplication across collectors. Default 5 s. "
        "Env FLOWSIGHT_DEDUP_REFRESH_SECONDS.",
    )
    dedup_window: timedelta = Field(
        timedelta(days=7),
        description="How long an event id (by its arrival) or span id (by its start time) is "
        "remembered for deduplication: a resend within it is answered as a duplicate and never "
        "stored again. A later resend of an event is counted as accepted and stored once in the "
        "end (events replace on merge); a later resend of a span is stored again. Memory is "
        "16 bytes an id within the window. A duration (7d, 12h, 90m) or seconds. Default 7d. "
        "Env FLOWSIGHT_DEDUP_WINDOW.",
    )
    wal_dir: Path | None = Field(
        None,
        description="Directory of the write-ahead log, where every accepted batch is fsynced "
        "before it is acknowledged and waits until it is loaded into ClickHouse. Put it on a "
        "local disk. Default <data_dir>/wal. Env FLOWSIGHT_WAL_DIR.",
    )
    wal_max_bytes: int = Field(
        1024 * MiB,
        gt=0,
        description="Write-ahead log capacity: the bytes of records that may wait to be loaded while "
        "ClickHouse is slow or down; when they reach it (or the log's volume is full), ingest "
        "answers 503 with Retry-After. "
        "Default 1 GiB. Env FLOWSIGHT_WAL_MAX_BYTES.",
    )
    wal_segment_bytes: int = Field(
        64 * MiB,
        gt=0,
        description="Size of one write-ahead log file; a file is deleted once every record in it "
        "is loaded. Default 64 MiB. Env FLOWSIGHT_WAL_SEGMENT_BYTES.",
    )
    load_linger_ms: float = Field(
        100.0,
        ge=0,
        description="How long the loader waits for more records while fewer than write_batch_rows "
        "rows wait, so that ClickHouse gets fewer, larger inserts (fewer parts to merge); it stops "
        "waiting as soon as a read waits for it. Default 100 ms. "
        "Env FLOWSIGHT_LOAD_LINGER_MS.",
    )
    load_retry_seconds: float = Field(
        0.25,
        gt=0,
        description="First wait before the loader retries a failed insert; each further failure "
        "doubles it, up to load_retry_max_seconds. Default 0.25 s. Env FLOWSIGHT_LOAD_RETRY_SECONDS.",
    )
    load_retry_max_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest wait between the loader's retries. Default 5 s. "
        "Env FLOWSIGHT_LOAD_RETRY_MAX_SECONDS.",
    )
    read_after_write_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a read (timeline, flow health, stuck orders, evaluation) waits for "
        "the events acknowledged before it to be loaded into ClickHouse; past it the read answers "
        "503 with Retry-After, naming the loader's lag (a scheduled evaluation goes ahead). "
        "Default 10 s. Env FLOWSIGHT_READ_AFTER_WRITE_TIMEOUT_SECONDS.",
    )
    retry_after_seconds: int = Field(
        5,
        gt=0,
        description="Retry-After sent with 503/429 answers, in seconds. Default 5 s. "
        "Env FLOWSIGHT_RETRY_AFTER_SECONDS.",
    )
    # -- security -------------------------------------------------------------------------
    tokens_file: Path | None = Field(
        None,
        description="YAML file of bearer tokens with scopes (ingest, read, admin). Without it nothing "
        "is checked and the service listens on loopback only. Default none. Env FLOWSIGHT_TOKENS_FILE.",
    )
    rate_limit_requests_per_second: float = Field(
        100.0,
        ge=0,
        description="Requests a second each token may make (a token's own requests_per_second wins); "
        "more gets 429 with Retry-After. 0 turns the limit off. Default 100. "
        "Env FLOWSIGHT_RATE_LIMIT_REQUESTS_PER_SECOND.",
    )
    rate_limit_burst: float = Field(
        200.0,
        ge=1,
        description="Requests a token may make at once before its rate limit applies. Default 200. "
        "Env FLOWSIGHT_RATE_LIMIT_BURST.",
    )
    correlation_keys: tuple[str, ...] = Field(
        DEFAULT_CORRELATION_KEYS,
        min_length=1,
        description="Span, log and resource attribute names that carry the correlation ID. Default "
        "order.id, order_id, correlation.id, app.order.id. Env FLOWSIGHT_CORRELATION_KEYS (JSON list).",
    )
    # -- configuration files ----------------------------------------------------------------
    workflows_file: Path | None = Field(
        None,
        description="YAML file of workflows; default: the built-in retail workflows. "
        "Env FLOWSIGHT_WORKFLOWS_FILE.",
    )
    topology_file: Path | None = Field(
        None,
        description="YAML file of systems and their dependencies; default: the built-in retail "
        "topology. Env FLOWSIGHT_TOPOLOGY_FILE.",
    )
    role: Literal["all", "collector", "evaluator"] = Field(
        "all",
        description="What this instance runs: all (ingest, evaluation and pages; the default, and "
        "the only role on the embedded database), collector (ingest and reads, no evaluation) or "
        "evaluator (SLO and alert evaluation and reads, no ingest; run exactly one). Env FLOWSIGHT_ROLE.",
    )
    evaluation_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="Seconds between scheduled SLO evaluations (each stored as a snapshot); 0 turns "
        "the schedule off. Default 60 s. Env FLOWSIGHT_EVALUATION_INTERVAL_SECONDS.",
    )
    slos_file: Path | None = Field(
        None,
        description="YAML file of SLOs; default: the built-in retail SLOs. Env FLOWSIGHT_SLOS_FILE.",
    )
    alert_rules_file: Path | None = Field(
        None,
        description="YAML file of alert rules; default: the built-in retail rules. "
        "Env FLOWSIGHT_ALERT_RULES_FILE.",
    )
    # -- notifications ----------------------------------------------------------------------
    alertmanager_url: str | None = Field(
        None,
        description="Prometheus Alertmanager base URL (alerts go to its API v2, re-sent while firing); "
        "unset: none. Env FLOWSIGHT_ALERTMANAGER_URL.",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="URL that receives grouped notifications as Alertmanager webhook v4 bodies; unset: "
        "none. Env FLOWSIGHT_ALERT_WEBHOOK_URL.",
    )
    slack_webhook_url: str | None = Field(
        None,
        description="Slack-compatible incoming-webhook URL for grouped notifications; unset: none. "
        "Env FLOWSIGHT_SLACK_WEBHOOK_URL.",
    )
    alert_group_by: list[str] = Field(
        default_factory=lambda: ["alertname", "system"],
        description="Labels that group notifications for the webhook and Slack receivers. Default "
        "alertname, system. Env FLOWSIGHT_ALERT_GROUP_BY (JSON list).",
    )
    alert_group_wait_seconds: float = Field(
        30.0,
        ge=0,
        description="Seconds a new notification group waits before its first notification. Default 30 s. "
        "Env FLOWSIGHT_ALERT_GROUP_WAIT_SECONDS.",
    )
    alert_group_interval_seconds: float = Field(
        300.0,
        ge=0,
        description="Seconds between notifications of a changed group. Default 300 s. "
        "Env FLOWSIGHT_ALERT_GROUP_INTERVAL_SECONDS.",
    )
    alert_repeat_interval_seconds: float = Field(
        14400.0,
        ge=0,
        description="Seconds before an unchanged firing group is notified again. Default 14400 s (4h). "
        "Env FLOWSIGHT_ALERT_REPEAT_INTERVAL_SECONDS.",
    )
    notify_retry_attempts: int = Field(
        5,
        ge=1,
        description="Delivery attempts per notification, with exponential backoff between them. "
        "Default 5. Env FLOWSIGHT_NOTIFY_RETRY_ATTEMPTS.",
    )
    notify_retry_base_seconds: float = Field(
        1.0,
        ge=0,
        description="Backoff before the second attempt, doubling after each failure (at most 60 s). "
        "Default 1 s. Env FLOWSIGHT_NOTIFY_RETRY_BASE_SECONDS.",
    )
    notify_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Timeout of one delivery attempt. Default 5 s. Env FLOWSIGHT_NOTIFY_TIMEOUT_SECONDS.",
    )
    external_url: str = Field(
        "",
        description="The URL people reach flowsight at; alert links (generatorURL) point there. "
        "Default: none. Env FLOWSIGHT_EXTERNAL_URL.",
    )
    # -- self-observability -------------------------------------------------------------------
    self_tracing: bool = Field(
        False,
        description="Trace flowsight's own requests with the OpenTelemetry SDK. Default off. "
        "Env FLOWSIGHT_SELF_TRACING.",
    )
    self_tracing_endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces",
        description="OTLP/HTTP traces endpoint for self-tracing. Default "
        "http://127.0.0.1:4318/v1/traces. Env FLOWSIGHT_SELF_TRACING_ENDPOINT.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level. Default info. Env FLOWSIGHT_LOG_LEVEL."
    )

    @field_validator("alertmanager_url", "alert_webhook_url", "slack_webhook_url", "external_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _role_needs_a_server(self) -> Settings:
        if self.role != "all" and self.embedded:
            raise ValueError(
                f"role: {self.role!r} needs a ClickHouse server (clickhouse_dsn http:// or https://); "
                "the embedded database runs all-in-one"
            )
        return self

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value

    @property
    def dsn(self) -> str:
        """The effective ClickHouse DSN."""
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    @property
    def validation_pool_size(self) -> int:
        """``validation_threads``, or one less than the cores this process may run on (at least 1)."""
        if self.validation_threads is not None:
            return self.validation_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores - 1)

    @property
    def wal_path(self) -> Path:
        return self.wal_dir or self.data_dir / "wal"

    @field_validator("dedup_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and value and value[-1] in "smhdw":
            value = parse_duration(value)
        if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
            seconds = value.total_seconds() if isinstance(value, timedelta) else value
            if seconds <= 0:
                raise ValueError("the dedup window must be longer than 0 s")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags and file values arrive as init values (load_settings drops file keys the
        # environment sets, which puts the file below the environment).
        return (init_settings, env_settings)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: flags (``overrides``) > ``FLOWSIGHT_*`` env > YAML file > defaults.

    Raises:
        flowsight.configfiles.ConfigurationError: the YAML file, a variable or a flag is invalid;
            every problem is listed with where it came from.
    """
    from flowsight.configfiles import ConfigurationError, read_settings_file, settings_issues

    if config_file is None and os.environ.get("FLOWSIGHT_CONFIG"):
        config_file = Path(os.environ["FLOWSIGHT_CONFIG"])
    file_values = read_settings_file(config_file) if config_file is not None else {}
    # The file ranks below the environment, so keys the environment sets are dropped from it.
    values = {k: v for k, v in file_values.items() if _env_name(str(k)) not in os.environ}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        source = str(config_file) if config_file else "<settings>"
        flags = frozenset(k for k, v in overrides.items() if v is not None)
        raise ConfigurationError(settings_issues(exc, source, set(file_values), flags)) from None


def _env_name(field: str) -> str:
    return f"FLOWSIGHT_{field.upper()}"
