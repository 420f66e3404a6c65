"""PlainRoute: the endpoint gets the request and its response goes out as returned; the
route is still matched, guarded by the app's exception handlers and documented."""

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.kit.plain_route import PlainRoute


class Answer(BaseModel):
    status: str


def app_with_plain_route(dependency_calls: list[str]) -> FastAPI:
    app = FastAPI()

    def dependency() -> None:
        dependency_calls.append("called")

    @app.exception_handler(HTTPException)
    async def problem(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"problem": exc.detail}, status_code=exc.status_code)

    async def endpoint(request: Request) -> Response:
        if request.query_params.get("fail"):
            raise HTTPException(409, "refused")
        body = await request.body()
        return Response(body[::-1], status_code=202, headers={"X-Seen": request.url.path})

    app.router.add_api_route(
        "/things/{thing_id}",
        endpoint,
        methods=["POST"],
        route_class_override=PlainRoute,
        response_model=Answer,
        dependencies=[Depends(dependency)],
        summary="Take a thing",
    )
    return app


async def test_the_endpoint_answers_as_it_returned_and_nothing_is_resolved() -> None:
    calls: list[str] = []
    app = app_with_plain_route(calls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        answered = await c.post("/things/7", content=b"abc")
        failed = await c.post("/things/7?fail=1", content=b"abc")
        missing = await c.post("/things", content=b"abc")

    # Returned as is: not validated against the response model (which it does not match).
    assert (answered.status_code, answered.content) == (202, b"cba")
    assert answered.headers["X-Seen"] == "/things/7"
    # The app's exception handlers still render what the endpoint raises.
    assert (failed.status_code, failed.json()) == (409, {"problem": "refused"})
    assert missing.status_code == 404
    # FastAPI resolved nothing for the route: its declared dependency never ran.
    assert calls == []


def test_the_route_is_documented_from_its_declaration() -> None:
    operation = app_with_plain_route([]).openapi()["paths"]["/things/{thing_id}"]["post"]
    assert operation["summary"] == "Take a thing"
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Answer"}
