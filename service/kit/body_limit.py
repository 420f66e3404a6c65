"""A request body cap that answers 413 as problem details, for declared and chunked bodies.

Starlette's own `RequestBodyLimitMiddleware` answers a too-large declared Content-Length with
plain text; every error of this API is problem+json, so the cap lives here. It is pure ASGI:
a declared length over the cap is refused before the app runs, and a streamed body is
counted as it arrives and stopped at the cap (so a huge chunked upload is never buffered).
"""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import problem_response


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = problem_response(413, detail=BodyTooLarge(self.max_body_bytes).detail)
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException, so FastAPI's body parsing re-raises it unchanged and
                    # the problem handler renders it.
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, limited_receive, send)
