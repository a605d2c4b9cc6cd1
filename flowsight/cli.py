"""The ``flowsight`` command: serve, migrate, check-config, settings."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from flowsight.configfiles import ConfigurationError, check_file
from flowsight.settings import Settings, load_settings

GC_THRESHOLDS = (50_000, 20, 20)
"""Objects allocated (net) before a young collection, and young (middle) collections before the
next older one: the defaults are 700, 10, 10."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from flowsight.app import build_services, create_app
    from flowsight.auth import loopback_only, redact_dsn

    settings = _settings(args)
    # The writer thread spends most of a commit inside ClickHouse with the GIL released and
    # needs it back only briefly between calls; a short switch interval stops request parsing
    # from holding it for the default 5 ms each time (measured: bench/README.md).
    sys.setswitchinterval(0.002)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("flowsight")
    services = build_services(settings)
    host, notice = loopback_only(settings.host, services.tokens)
    if notice:
        log.warning(notice)
    elif services.tokens is not None:
        log.info(
            "%d tokens configured; every route but the probes and sign-in needs one", len(services.tokens)
        )
    else:
        log.info("no tokens configured: requests are not authenticated (loopback only)")
    log.info(
        "database %s (%s), listening on http://%s:%d",
        settings.database,
        redact_dsn(settings.dsn),
        host,
        settings.port,
    )
    app = create_app(services)
    # Requests allocate many short-lived containers (a list per column, a tuple per row); with
    # the default thresholds the cyclic collector took ~10% of the event loop under OTLP load,
    # mostly re-walking what start-up built. That is frozen out of collection, and the young
    # generation is collected less often (measured: bench/README.md).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(app, host=host, port=settings.port, log_level=settings.log_level, access_log=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flowsight.demo import main
    from flowsight.demo.runner import DemoOptions
    from flowsight.demo.scenarios import SCENARIOS
    from flowsight.durations import parse_duration

    if args.scenario and args.scenario not in SCENARIOS:
        print(
            f"--scenario: unknown scenario {args.scenario!r}: expected one of {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2

    def seconds(flag: str, value: str | None) -> float | None:
        if value is None:
            return None
        if value.strip() in ("0", "0s"):
            return 0.0
        try:
            return parse_duration(value).total_seconds()
        except ValueError as exc:
            raise SystemExit(f"{flag}: {exc}") from None

    settings = _settings(args)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = DemoOptions(
        speed=args.speed,
        backfill_s=seconds("--backfill", args.backfill) or 0.0,
        duration_s=seconds("--duration", args.duration),
        max_orders=args.max_orders,
        seed=args.seed,
        scenarios=() if args.no_scenarios else DemoOptions().scenarios,
    )
    options.estate = type(options.estate)(orders_per_minute=args.orders_per_minute)
    options.spans = not args.no_spans
    if args.target:
        main.load(args.target, options, pregenerate=args.pregenerate, connections=args.connections)
        return 0
    return main.run(settings, options, args.scenario)


def cmd_migrate(args: argparse.Namespace) -> int:
    from flowsight import migrations
    from flowsight.app import MIGRATIONS, open_store, schema_of

    settings = _settings(args)
    schema = schema_of(settings)
    if args.print_ddl:
        for sql in migrations.plan(schema, MIGRATIONS):
            print(sql.rstrip() + ";\n")
        return 0
    store = open_store(settings)
    try:
        applied = migrations.migrate(store, schema, MIGRATIONS)
    finally:
        store.close()
    if applied:
        for migration_id in applied:
            print(f"applied {migration_id}")
    else:
        print("schema is up to date")
    return 0


def cmd_cluster_config(args: argparse.Namespace) -> int:
    from flowsight.cluster_layout import ClusterLayout

    try:
        layout = ClusterLayout(args.cluster, args.shards, args.replicas, args.host_pattern, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in layout.files().items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from flowsight.alerts.loading import check_rules_file
    from flowsight.slo.loading import DEFAULT_SLOS, check_slo_file
    from flowsight.workflows import DEFAULT_WORKFLOWS

    # SLO and alert-rule files are checked against the built-in workflows and SLOs
    # (check-config takes no workflows or SLO file to pair them with).
    checkers = {
        "slos": lambda p: check_slo_file(p, DEFAULT_WORKFLOWS),
        "rules": lambda p: check_rules_file(p, DEFAULT_WORKFLOWS, DEFAULT_SLOS),
    }
    failed = 0
    for path in args.paths:
        kind, issues = check_file(Path(path), checkers)
        if issues:
            failed += 1
            for issue in issues:
                print(f"error: {issue}", file=sys.stderr)
        else:
            print(f"ok: {path} ({kind})")
    return 1 if failed else 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(settings_table())
        return 0
    settings = _settings(args)
    for name, info in Settings.model_fields.items():
        print(f"{name} = {getattr(settings, name)!r}\n    {info.description}")
    return 0


def settings_table() -> str:
    """Every setting as a markdown table (the README's configuration section)."""
    lines = ["| setting | environment variable | meaning, default and unit |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `FLOWSIGHT_{name.upper()}` | {description} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="flowsight", description="Business-SLO monitoring for retail workflows."
    )
    top.add_argument("--config", type=Path, help="settings YAML file (also FLOWSIGHT_CONFIG)")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (FLOWSIGHT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (FLOWSIGHT_PORT, default 4318)")
    serve.add_argument("--data-dir", type=Path, help="data directory (FLOWSIGHT_DATA_DIR)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo",
        help="run the service with a simulated retailer sending it traffic (Ctrl-C stops)",
        description="Starts flowsight on the embedded database (database flowsight_demo, emptied at "
        "start) and a simulated omnichannel retailer: web, app, store pickup and marketplace orders "
        "through oms, payments, tax, middleware, erp, wms, shipping and crm, sending lifecycle events "
        "to /v1/events and OTLP traces and logs with the OpenTelemetry SDK. Scenarios play in turn.",
    )
    demo.add_argument("--host", help="bind address (FLOWSIGHT_HOST, default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port (FLOWSIGHT_PORT, default 4318)")
    demo.add_argument("--data-dir", type=Path, help="data directory (FLOWSIGHT_DATA_DIR)")
    demo.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per second (default 60: an hour a minute)",
    )
    demo.add_argument(
        "--orders-per-minute", type=float, default=6.0, help="simulated orders a simulated minute (default 6)"
    )
    demo.add_argument(
        "--backfill", default="6h", help="history to play before now, e.g. 7d (default 6h; 0 for none)"
    )
    demo.add_argument("--duration", help="simulated time to run live, e.g. 12h (default: until Ctrl-C)")
    demo.add_argument("--max-orders", type=int, help="stop after this many orders")
    demo.add_argument(
        "--scenario",
        help="start this scenario right away: erp-outage, shipping-degraded, marketplace-batch-delay or refund-backlog",
    )
    demo.add_argument("--no-scenarios", action="store_true", help="do not play scenarios on a schedule")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--target",
        help="load-generator mode: send --duration of simulated traffic (default 1h) as fast as it goes "
        "to a flowsight already running at this URL, and report the rate; no service is started",
    )
    demo.add_argument("--no-spans", action="store_true", help="send lifecycle events only, no OTLP spans")
    demo.add_argument(
        "--pregenerate",
        action="store_true",
        help="with --target: simulate first, then send the events (NDJSON, 1,000 a batch) as fast as the "
        "service takes them over --connections connections",
    )
    demo.add_argument(
        "--connections", type=int, default=8, help="with --pregenerate: connections (default 8)"
    )
    demo.set_defaults(func=cmd_demo)

    migrate = sub.add_parser("migrate", help="apply schema migrations and exit")
    migrate.add_argument("--data-dir", type=Path, help="data directory (FLOWSIGHT_DATA_DIR)")
    migrate.add_argument(
        "--print-ddl", action="store_true", help="print every statement instead of running them"
    )
    migrate.set_defaults(func=cmd_migrate)

    layout = sub.add_parser(
        "cluster-config",
        help="write the ClickHouse remote_servers and per-server macros files for a shards x replicas cluster",
    )
    layout.add_argument("--cluster", required=True, help="cluster name (FLOWSIGHT_CLUSTER)")
    layout.add_argument("--shards", type=int, required=True)
    layout.add_argument("--replicas", type=int, required=True)
    layout.add_argument(
        "--host-pattern", default="clickhouse-{shard}-{replica}", help="server host names, from 1"
    )
    layout.add_argument("--port", type=int, default=9000, help="native protocol port (default 9000)")
    layout.add_argument("--out", type=Path, required=True, help="directory to write the XML files to")
    layout.set_defaults(func=cmd_cluster_config)

    check = sub.add_parser("check-config", help="validate workflow, topology and settings files")
    check.add_argument("paths", nargs="+", help="YAML files")
    check.set_defaults(func=cmd_check_config)

    show = sub.add_parser("settings", help="print every setting with its value, default and unit")
    show.add_argument("--markdown", action="store_true", help="print the documentation table instead")
    show.set_defaults(func=cmd_settings)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
