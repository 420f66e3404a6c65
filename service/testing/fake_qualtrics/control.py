"""The HTTP control surface under `/_fake/`, for scripts that run the fake as its own process.

Plain JSON in and out; errors are `{"error": "...", "details"?: [...]}` with 400, 404 or 409.

    GET    /_fake/health                          {"status": "ok"}
    POST   /_fake/reset                           forget everything but the configuration
    GET    /_fake/config      PATCH /_fake/config  FakeQualtricsConfig fields, e.g.
                                                  {"latency_seconds": 0.05,
                                                   "rate_limit": {"requests_per_second": 50}}
    GET    /_fake/accounts    POST /_fake/accounts {"client_id", "client_secret", "datacenter",
                                                  "brand_id", optional "api_token", "scopes",
                                                  whoami fields}
    POST   /_fake/accounts/{client_id}/revoke-tokens        {"revoked": n}
    POST   /_fake/accounts/{client_id}/revoke-credentials
    GET    /_fake/clock       PUT /_fake/clock     {"now": ISO 8601 with offset, or null}
    POST   /_fake/clock/advance                   {"seconds": n}
    GET    /_fake/faults      POST /_fake/faults   a Fault (see config.Fault)   DELETE: clear all
    GET    /_fake/surveys                         summaries of every brand's surveys
    GET    /_fake/surveys/{id}                    definition, questions in order, embedded fields
    DELETE /_fake/surveys/{id}                    delete out of band (as in the Qualtrics UI)
    GET    /_fake/surveys/{id}/responses          the values exactly as posted, `recordedDate`
                                                  (whole seconds), `recordedTimestamp` (the
                                                  same, Unix seconds to the microsecond)
    DELETE /_fake/surveys/{id}/responses          forget them (a benchmark between rounds)
                                                  {"deleted": n}
    GET    /_fake/stats                           {"total", "by_status", "rate_limited"}
    GET    /_fake/requests?limit=N                the last N requests (method, path, status,
                                                  `timestamp`: arrival in Unix seconds…)
"""

from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .clock import iso
from .config import FakeQualtricsConfig, Fault
from .context import fake_of
from .envelope import JsonObject
from .state import FakeQualtrics
from .surveys import Survey

Body = TypeVar("Body", bound=BaseModel)


class ControlError(Exception):
    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        body: JsonObject = {"error": self.message}
        if self.details is not None:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status)


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: str
    datacenter: str
    brand_id: str
    api_token: str | None = None
    scopes: list[str] | None = None
    user_id: str | None = None
    user_name: str | None = None
    account_type: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class ClockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    now: AwareDatetime | None


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float


async def _body(request: Request, model: type[Body]) -> Body:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ControlError(400, f"Invalid {model.__name__} body", details) from None


def _survey(fake: FakeQualtrics, request: Request) -> Survey:
    survey = fake.surveys.get(request.path_params["survey_id"])
    if survey is None:
        raise ControlError(404, "No such survey")
    return survey


def _client_id(fake: FakeQualtrics, request: Request) -> str:
    client_id: str = request.path_params["client_id"]
    if client_id not in fake.accounts.accounts:
        raise ControlError(404, f"No account with client_id {client_id!r}")
    return client_id


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def reset(request: Request) -> Response:
    fake_of(request).reset()
    return JSONResponse({"status": "ok"})


async def get_config(request: Request) -> Response:
    return JSONResponse(fake_of(request).config.model_dump(mode="json"))


async def patch_config(request: Request) -> Response:
    config = fake_of(request).config
    changes = await _body(request, FakeQualtricsConfig)
    for name in changes.model_fields_set:
        setattr(config, name, getattr(changes, name))
    return JSONResponse(config.model_dump(mode="json"))


async def list_accounts(request: Request) -> Response:
    accounts = fake_of(request).accounts.accounts.values()
    return JSONResponse([account.as_json() for account in accounts])


async def create_account(request: Request) -> Response:
    body = await _body(request, AccountIn)
    fields = body.model_dump(exclude_none=True)
    scopes = fields.pop("scopes", None)
    try:
        account = fake_of(request).register_account(
            scopes=None if scopes is None else frozenset(scopes), **fields
        )
    except ValueError as exc:
        raise ControlError(409, str(exc)) from None
    return JSONResponse(account.as_json(), status_code=201)


async def revoke_tokens(request: Request) -> Response:
    fake = fake_of(request)
    return JSONResponse({"revoked": fake.revoke_tokens(_client_id(fake, request))})


async def revoke_credentials(request: Request) -> Response:
    fake = fake_of(request)
    fake.revoke_credentials(_client_id(fake, request))
    return JSONResponse({"status": "ok"})


async def get_clock(request: Request) -> Response:
    return JSONResponse({"now": iso(fake_of(request).now())})


async def set_clock(request: Request) -> Response:
    fake = fake_of(request)
    fake.set_clock((await _body(request, ClockIn)).now)
    return JSONResponse({"now": iso(fake.now())})


async def advance_clock(request: Request) -> Response:
    fake = fake_of(request)
    fake.advance_clock((await _body(request, AdvanceIn)).seconds)
    return JSONResponse({"now": iso(fake.now())})


async def list_faults(request: Request) -> Response:
    faults = fake_of(request).faults.pending()
    return JSONResponse([fault.model_dump(mode="json") for fault in faults])


async def add_fault(request: Request) -> Response:
    fault = fake_of(request).inject_fault(await _body(request, Fault))
    return JSONResponse(fault.model_dump(mode="json"), status_code=201)


async def clear_faults(request: Request) -> Response:
    fake_of(request).clear_faults()
    return JSONResponse({"status": "ok"})


async def list_surveys(request: Request) -> Response:
    surveys = fake_of(request).surveys.values()
    return JSONResponse([{**survey.summary(), "brandId": survey.brand_id} for survey in surveys])


async def get_survey(request: Request) -> Response:
    survey = _survey(fake_of(request), request)
    definition = survey.definition()
    return JSONResponse(
        {
            **survey.summary(),
            "brandId": survey.brand_id,
            "definition": definition,
            "questions": list(definition["Questions"].values()),
            "embeddedFields": survey.embedded_fields(),
            "versions": [version.metadata() for version in survey.versions],
            "responseCount": len(survey.responses),
        }
    )


async def delete_survey(request: Request) -> Response:
    fake = fake_of(request)
    fake.delete_survey(_survey(fake, request).survey_id)
    return JSONResponse({"status": "ok"})


async def list_responses(request: Request) -> Response:
    survey = _survey(fake_of(request), request)
    return JSONResponse([response.as_json() for response in survey.responses.values()])


async def clear_responses(request: Request) -> Response:
    survey = _survey(fake_of(request), request)
    return JSONResponse({"deleted": survey.clear_responses()})


async def stats(request: Request) -> Response:
    return JSONResponse(fake_of(request).stats.as_json())


async def recent_requests(request: Request) -> Response:
    raw_limit = request.query_params.get("limit", "100")
    if not raw_limit.isdecimal():
        raise ControlError(400, "limit must be a non-negative integer")
    log = list(fake_of(request).request_log)
    recent = log[-int(raw_limit) :] if int(raw_limit) else []
    return JSONResponse([record.as_json() for record in recent])


routes = [
    Route("/_fake/health", health, methods=["GET"]),
    Route("/_fake/reset", reset, methods=["POST"]),
    Route("/_fake/config", get_config, methods=["GET"]),
    Route("/_fake/config", patch_config, methods=["PATCH"]),
    Route("/_fake/accounts", list_accounts, methods=["GET"]),
    Route("/_fake/accounts", create_account, methods=["POST"]),
    Route("/_fake/accounts/{client_id}/revoke-tokens", revoke_tokens, methods=["POST"]),
    Route("/_fake/accounts/{client_id}/revoke-credentials", revoke_credentials, methods=["POST"]),
    Route("/_fake/clock", get_clock, methods=["GET"]),
    Route("/_fake/clock", set_clock, methods=["PUT"]),
    Route("/_fake/clock/advance", advance_clock, methods=["POST"]),
    Route("/_fake/faults", list_faults, methods=["GET"]),
    Route("/_fake/faults", add_fault, methods=["POST"]),
    Route("/_fake/faults", clear_faults, methods=["DELETE"]),
    Route("/_fake/surveys", list_surveys, methods=["GET"]),
    Route("/_fake/surveys/{survey_id}", get_survey, methods=["GET"]),
    Route("/_fake/surveys/{survey_id}", delete_survey, methods=["DELETE"]),
    Route("/_fake/surveys/{survey_id}/responses", list_responses, methods=["GET"]),
    Route("/_fake/surveys/{survey_id}/responses", clear_responses, methods=["DELETE"]),
    Route("/_fake/stats", stats, methods=["GET"]),
    Route("/_fake/requests", recent_requests, methods=["GET"]),
]
