"""The API's HTTP server: uvicorn's httptools protocol with limits a public endpoint needs.

uvicorn alone bounds neither the size of a request's head under httptools (its fastest
parser: 40 % more throughput than h11 here) nor the time a client may take to send it, so
a few hundred half-sent requests hold their sockets forever and one 100 MB header is
buffered whole. Here:

- a request's line and headers together are at most `MAX_HEAD_BYTES` (431 beyond);
- a client has `METER_API_REQUEST_TIMEOUT_SECONDS` from connecting, or from the end of the
  previous response, to send a whole request (then the connection is closed);
- an idle kept-alive connection is closed after `KEEP_ALIVE_SECONDS`;
- a process holds at most `METER_API_MAX_CONNECTIONS` connections. A whole request that
  arrives when they are all taken closes the connections that have waited longest without
  sending one (half-sent or idle: a slowloris client's), so held sockets never lock real
  clients out; only when every connection is busy answering does it get 503 at once, with
  the security headers every answer carries.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meter_assets.config import settings
from meter_assets.serving.api import API_POLICY, SECURITY_HEADERS

# tokens are a few hundred bytes and browsers send a few KiB of headers
MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_SECONDS = 5
LINGER_SECONDS = 2


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request to arrive whole, and a
    cap on the size of its head."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_deadline: asyncio.TimerHandle | None = None
        self.head_bytes = 0
        self.reading_head = True
        self.refused = False
        self.waiting_since = 0.0
        # the bound is kept here, not by uvicorn: its 503 would be sent before any connection
        # that only holds a socket could make room
        self.bound, self.limit_concurrency = self.limit_concurrency, None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # what a refused client still sends is read and dropped, so it gets the 431
        if self.reading_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self.reading_head = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.head_bytes = 0
        if self.bound is not None and len(self.connections) > self.bound:
            self._make_room(len(self.connections) - self.bound)
        if self.bound is not None and (len(self.connections) > self.bound or len(self.tasks) >= self.bound):
            app, self.app = self.app, over_limit
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def _make_room(self, count: int) -> None:
        """Close the `count` connections that have waited longest without sending a whole request."""
        waiting = sorted(
            (c for c in self.connections if c is not self and getattr(c, "reading_head", False)),
            key=lambda c: c.waiting_since,
        )
        for connection in waiting[:count]:
            connection._cancel_deadline()
            self.connections.discard(connection)
            connection.transport.close()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _await_request(self) -> None:
        self._cancel_deadline()
        # the next bytes are the next request's head (the API takes no request bodies)
        self.reading_head, self.head_bytes = True, 0
        self.waiting_since = self.loop.time()
        self.request_deadline = self.loop.call_later(settings().api_request_timeout_seconds, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
            self.request_deadline = None

    def _too_slow(self) -> None:
        self.request_deadline = None
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering and not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        """431, then a lingering close: closing at once, with the client's bytes unread, would
        reset the connection before the client reads the answer."""
        self._cancel_deadline()
        self.refused = True
        body = b"request line and headers exceed 16 KiB"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8"
            b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


async def over_limit(scope, receive, send) -> None:
    """503 when every connection is busy answering: JSON, with the security headers."""
    body = b'{"detail":"the server is at its connection limit; try again shortly"}'
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": API_POLICY,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Cache-Control": "private, no-store",
        "Retry-After": "1",
        "Connection": "close",
    }
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def limits() -> dict:
    """uvicorn's options for the API: the bounded protocol and the limits above."""
    return {
        "http": BoundedHttpToolsProtocol,
        "limit_concurrency": settings().api_max_connections,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "server_header": False,
    }
