"""Pure-ASGI middleware: a request id on every request and response, and intake timing."""

import time

from prometheus_client import Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.context import new_request_id, request_id_var
from service.observability.metrics import HTTP_REQUEST_SECONDS

REQUEST_ID_HEADER = "X-Request-ID"

# The histogram's children by (method, route template, status), looked up once each.
_HISTOGRAMS: dict[tuple[str, str, int], Histogram] = {}


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            key = (scope["method"], getattr(route, "path", "unmatched"), status)
            histogram = _HISTOGRAMS.get(key)
            if histogram is None:  # one per route and status: few, so kept
                histogram = _HISTOGRAMS[key] = HTTP_REQUEST_SECONDS.labels(*key[:2], str(status))
            histogram.observe(time.perf_counter() - started)
            request_id_var.reset(token)
