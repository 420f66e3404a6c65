"""What every API v3 handler gets, and the decorator that authenticates and admits it.

Handlers are plain (synchronous) functions: the decorator does all the awaiting first
(authentication, the rate limiter, simulated latency, reading the body), so a handler's reads
and writes of the state cannot interleave with another request's.
"""

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from .accounts import Account
from .envelope import JsonObject, bad_request, not_found
from .spec import QUESTION_ID, IdFormat
from .state import FakeQualtrics, checked_id
from .surveys import Survey
from .tenant import tenant_of

Handler = Callable[["ApiContext"], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def fake_of(request: Request) -> FakeQualtrics:
    return cast(FakeQualtrics, request.app.state.fake)


@dataclass(frozen=True)
class ApiContext:
    request: Request
    fake: FakeQualtrics
    account: Account
    body: bytes

    @property
    def now(self) -> datetime:
        return self.fake.now()

    def survey(self) -> Survey:
        """The `{surveyId}` of the path: 400 if malformed, 404 if not the caller's."""
        return self.fake.find_survey(self.request.path_params["surveyId"], self.account)

    def path_id(self, name: str, id_format: IdFormat) -> str:
        return checked_id(self.request.path_params[name], id_format)

    def question(self, survey: Survey, name: str = "questionId") -> str:
        question_id = self.path_id(name, QUESTION_ID)
        if question_id not in survey.questions:
            raise not_found()
        return question_id

    def json_object(self) -> JsonObject:
        """The body as a JSON object, or 400. Python's parser also takes `NaN` and lone
        surrogates, which are not JSON and could not be answered back; they are refused."""
        try:
            body = json.loads(self.body)
            json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        except ValueError:
            raise bad_request("The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object")
        return body


def api_endpoint(handler: Handler) -> Endpoint:
    """Wrap a handler: 401 without valid credentials for this datacenter, 429 over the limit,
    then the configured latency."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        fake = fake_of(request)
        account, token_key = fake.authenticate(request.headers, tenant_of(request).datacenter)
        with fake.admit(account, token_key):
            body = await request.body()
            await fake.simulate_latency()
            return handler(ApiContext(request=request, fake=fake, account=account, body=body))

    return endpoint
