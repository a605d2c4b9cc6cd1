"""HTTP routes of the OTLP/HTTP receiver: ``/v1/traces``, ``/v1/logs`` and a clear refusal on
``/v1/metrics``. Answers are encoded like the request (protobuf or JSON), errors as
``google.rpc.Status``, per the OTLP/HTTP specification."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from flowsight.auth import Principal, principal_of
from flowsight.collector.body import BodyError, decode, read_limited
from flowsight.collector.otlp import JSON, OtlpDecodeError, UnsupportedMediaType, media_type
from flowsight.collector.otlp_ingest import OtlpIngestor, OtlpResult
from flowsight.collector.wal import WalFull, WalWriteFailed
from flowsight.collector.writer import Backpressure

_GRPC_CODES = {400: 3, 413: 8, 415: 3, 404: 12, 503: 14}  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...


def encode(
    message: Message, media: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if media == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return Response(body, status_code=status, media_type=media, headers=headers)


def status_response(status: int, message: str, media: str, retry_after: int | None = None) -> Response:
    error = status_pb2.Status(code=_GRPC_CODES.get(status, 2), message=message)
    return encode(error, media, status, {"Retry-After": str(retry_after)} if retry_after else None)


def router(
    ingestor: OtlpIngestor, *, max_body_bytes: int, max_decompressed_bytes: int, retry_after_seconds: int
) -> APIRouter:
    api = APIRouter(tags=["otlp"])

    async def receive(
        request: Request,
        handle: Callable[[bytes, str, Principal | None], Awaitable[OtlpResult]],
        respond: Callable[[OtlpResult], Message],
    ) -> Response:
        try:
            media = media_type(request.headers.get("content-type"))
        except UnsupportedMediaType as exc:
            return status_response(415, str(exc), JSON)
        try:
            raw = await read_limited(request.stream(), request.headers.get("content-length"), max_body_bytes)
            body = decode(raw, request.headers.get("content-encoding"), max_decompressed_bytes)
            result = await handle(body, media, principal_of(request.state))
        except BodyError as exc:
            return status_response(exc.status, exc.message, media)
        except OtlpDecodeError as exc:
            return status_response(400, str(exc), media)
        except (WalFull, WalWriteFailed, Backpressure) as exc:
            return status_response(503, f"{exc}; retry later", media, retry_after_seconds)
        return encode(respond(result), media)

    def trace_response(result: OtlpResult) -> Message:
        response = ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        return response

    def log_response(result: OtlpResult) -> Message:
        response = ExportLogsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_log_records = result.rejected
            response.partial_success.error_message = result.message
        return response

    @api.post("/v1/traces", summary="OTLP/HTTP traces (protobuf or JSON, gzip)")
    async def post_traces(request: Request) -> Response:
        return await receive(request, ingestor.traces, trace_response)

    @api.post(
        "/v1/logs",
        summary="OTLP/HTTP logs; records with flowsight.workflow and flowsight.stage become lifecycle events",
    )
    async def post_logs(request: Request) -> Response:
        return await receive(request, ingestor.logs, log_response)

    @api.post("/v1/metrics", summary="Not supported: flowsight takes traces and logs")
    async def post_metrics(request: Request) -> Response:
        try:
            media = media_type(request.headers.get("content-type"))
        except UnsupportedMediaType:
            media = JSON
        return status_response(
            404,
            "flowsight does not accept OTLP metrics; send traces to /v1/traces and logs to /v1/logs",
            media,
        )

    return api
