"""An API route for a hot path: the endpoint takes the request and returns the response.

FastAPI's request handler resolves the endpoint's parameters, dependencies and body, and
validates its return value, for every request; it also parses the query string and cookies
even when nothing asks for them. An endpoint that reads what it needs from the `Request`
itself and renders its own `Response` needs none of that. `PlainRoute` calls such an
endpoint directly, and stays an `APIRoute` in everything else: matched by the same router,
inside the same exception handlers and middleware, and documented in the OpenAPI schema
from its declaration (response model, responses, `openapi_extra`) like any other route.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

PlainEndpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class PlainRoute(APIRoute):
    def get_route_handler(self) -> PlainEndpoint:
        endpoint: PlainEndpoint = self.endpoint
        return endpoint
