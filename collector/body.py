"""Reading request bodies within limits: size as sent, gzip, size after decompression."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

CHUNK = 256 * 1024


class BodyError(Exception):
    """A body that cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def read_limited(stream: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes without reading it all."""
    if declared_length is not None:
        try:
            if int(declared_length) > limit:
                raise BodyError(413, f"body of {declared_length} bytes exceeds the limit of {limit} bytes")
        except ValueError:
            raise BodyError(400, "invalid Content-Length") from None
    parts: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decode(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip), inflating at most ``limit`` bytes.

    A gzip bomb is refused as soon as its output passes the limit; the rest is never inflated.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}: use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            piece = inflater.decompress(data, CHUNK)
            size += len(piece)
            if size > limit:
                raise BodyError(413, f"body exceeds the limit of {limit} bytes after decompression")
            out.append(piece)
            data = inflater.unconsumed_tail
        tail = inflater.flush()
    except zlib.error as exc:
        raise BodyError(400, f"invalid {encoding} body: {exc}") from None
    size += len(tail)
    if size > limit:
        raise BodyError(413, f"body exceeds the limit of {limit} bytes after decompression")
    if not inflater.eof:
        raise BodyError(400, f"invalid {encoding} body: truncated stream")
    out.append(tail)
    return b"".join(out)
