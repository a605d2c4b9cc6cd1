"""Optional self-tracing: flowsight's own requests as OpenTelemetry spans over OTLP/HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from flowsight.settings import Settings

UNTRACED = frozenset({"/v1/traces", "/v1/logs"})
"""The OTLP receiver's own paths: tracing them would trace the export of those very spans
when flowsight reports to itself (the default endpoint), a loop that never goes quiet."""


def install(app: FastAPI, settings: Settings) -> Callable[[], None]:
    """Trace every request when ``settings.self_tracing`` is on; returns the shutdown hook."""
    if not settings.self_tracing:
        return lambda: None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "flowsight"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.self_tracing_endpoint)))
    tracer = provider.get_tracer("flowsight")

    @app.middleware("http")
    async def trace_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        route = request.url.path
        if route in UNTRACED:
            return await call_next(request)
        with tracer.start_as_current_span(f"{request.method} {route}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("url.path", route)
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    return provider.shutdown
