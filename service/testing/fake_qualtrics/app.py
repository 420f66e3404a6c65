"""The application factory: routes, the fault/recording middleware and the error renderers."""

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import api_auth, api_responses, api_surveys, control
from .accounts import OAuthError
from .config import FakeQualtricsConfig
from .envelope import QualtricsError, error_response
from .middleware import FakeQualtricsMiddleware
from .state import FakeQualtrics
from .tenant import SCOPE_KEY, Tenant

_V3 = "/API/v3"
_SURVEY = f"{_V3}/surveys/{{surveyId}}"
_DEFINITION = f"{_V3}/survey-definitions/{{surveyId}}"

API_ROUTES = [
    Route("/oauth2/token", api_auth.issue_token, methods=["POST"]),
    Route(f"{_V3}/whoami", api_auth.whoami, methods=["GET"]),
    Route(f"{_V3}/surveys", api_surveys.list_surveys, methods=["GET"]),
    Route(_SURVEY, api_surveys.get_survey, methods=["GET"]),
    Route(_SURVEY, api_surveys.update_survey, methods=["PUT"]),
    Route(_SURVEY, api_surveys.delete_survey, methods=["DELETE"]),
    Route(f"{_SURVEY}/responses", api_responses.create_response, methods=["POST"]),
    Route(f"{_SURVEY}/responses/{{responseId}}", api_responses.get_response, methods=["GET"]),
    Route(f"{_SURVEY}/responses/{{responseId}}", api_responses.delete_response, methods=["DELETE"]),
    Route(f"{_V3}/survey-definitions", api_surveys.create_survey, methods=["POST"]),
    Route(_DEFINITION, api_surveys.get_definition, methods=["GET"]),
    Route(_DEFINITION, api_surveys.delete_survey, methods=["DELETE"]),
    Route(f"{_DEFINITION}/metadata", api_surveys.get_metadata, methods=["GET"]),
    Route(f"{_DEFINITION}/metadata", api_surveys.update_metadata, methods=["PUT"]),
    Route(f"{_DEFINITION}/blocks", api_surveys.create_block, methods=["POST"]),
    Route(f"{_DEFINITION}/blocks/{{blockId}}", api_surveys.get_block, methods=["GET"]),
    Route(f"{_DEFINITION}/questions", api_surveys.list_questions, methods=["GET"]),
    Route(f"{_DEFINITION}/questions", api_surveys.create_question, methods=["POST"]),
    Route(f"{_DEFINITION}/questions/{{questionId}}", api_surveys.get_question, methods=["GET"]),
    Route(f"{_DEFINITION}/questions/{{questionId}}", api_surveys.update_question, methods=["PUT"]),
    Route(
        f"{_DEFINITION}/questions/{{questionId}}",
        api_surveys.delete_question,
        methods=["DELETE"],
    ),
    Route(f"{_DEFINITION}/flow", api_surveys.get_flow, methods=["GET"]),
    Route(f"{_DEFINITION}/flow", api_surveys.update_flow, methods=["PUT"]),
    Route(f"{_DEFINITION}/versions", api_surveys.list_versions, methods=["GET"]),
    Route(f"{_DEFINITION}/versions", api_surveys.create_version, methods=["POST"]),
    Route(f"{_DEFINITION}/versions/{{versionId}}", api_surveys.get_version, methods=["GET"]),
]


def create_fake_qualtrics_app(config: FakeQualtricsConfig | None = None) -> Starlette:
    """A fresh fake; its state is `app.state.fake` (a `FakeQualtrics`)."""
    fake = FakeQualtrics(config)
    handled = (QualtricsError, OAuthError, control.ControlError, HTTPException)
    app = Starlette(
        routes=[*control.routes, *API_ROUTES],
        middleware=[Middleware(FakeQualtricsMiddleware, fake=fake)],
        exception_handlers=dict.fromkeys(handled, _render_error),
    )
    app.state.fake = fake
    return app


async def _render_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, QualtricsError):
        return error_response(exc)
    if isinstance(exc, OAuthError):
        headers = {"WWW-Authenticate": 'Basic realm="qualtrics"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
    if isinstance(exc, control.ControlError):
        return exc.response()
    if isinstance(exc, HTTPException):
        return _unknown_route(request, exc.status_code)
    raise exc


def _unknown_route(request: Request, status: int) -> Response:
    """404 (no such path) or 405 (no such method) as an envelope [U: the real status for a
    wrong method]; the message quotes a public client's docstring [C]."""
    tenant = request.scope.get(SCOPE_KEY)
    path = tenant.path if isinstance(tenant, Tenant) else request.url.path
    message = f"API call does not exist: {request.method} {path}"
    return error_response(QualtricsError(status, message))
