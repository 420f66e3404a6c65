"""`QualtricsClient`: every Qualtrics call the setup steps and the delivery worker make.

One small class per external API (style lesson 12): it owns the base URL, token injection,
timeouts, the body cap and error classification, and returns typed results. It holds no
connection pool of its own: it borrows the `httpx.AsyncClient` it is given, so a process
creates one pool (see `transport.py`) and any number
of cheap `QualtricsClient`s for different credentials over it.

Per request:

1. The URL is built from the validated base (`urls.py`) and ids checked against their
   patterns, so user input never chooses the host or adds path segments.
2. A bearer token comes from the shared `TokenManager` (cached, refreshed early, single
   flight). On a 401 the token is refreshed exactly once and the request repeated; a second
   401 raises `QualtricsAuthRejected`. Repeating is safe even for a POST: a 401 means nothing
   was done, and create-response carries an Idempotency-Key anyway.
3. The answer is streamed with a size cap and a whole-request deadline; redirects are never
   followed (per request, whatever the shared client says).
4. Error statuses map to the tree in `errors.py`; a 2xx must be a JSON envelope whose
   `result` parses into the expected model, else `QualtricsProtocolError` (the rules are in
   `answers.py`).

Nothing retries here: whether and when to retry is the worker's decision (`exc.retryable`,
`QualtricsRateLimited.retry_after`), made against the database schedule.
"""

import asyncio
import base64
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_core import to_json

from service.qualtrics.answers import (
    Answer,
    Reply,
    parse_envelope,
    parse_grant,
    raise_for_status,
)
from service.qualtrics.errors import (
    QualtricsProtocolError,
    QualtricsTimeout,
    QualtricsTransportError,
    sanitize,
)
from service.qualtrics.models import (
    CreatedQuestion,
    CreatedResponse,
    CreatedSurvey,
    PublishedVersion,
    PublishedVersionResult,
    WhoAmI,
)
from service.qualtrics.tokens import Clock, TokenGrant, TokenManager, token_cache_key
from service.qualtrics.transport import MAX_RESPONSE_BYTES, REQUEST_DEADLINE, read_capped
from service.qualtrics.urls import (
    DEFAULT_BASE_URL_TEMPLATE,
    QualtricsBaseUrl,
    build_base_url,
    valid_block_id,
    valid_question_id,
    valid_survey_id,
    validate_subdomain,
)

# Header-safe, visible ASCII: what may go into `Idempotency-Key`.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")  # RFC 6749 §3.3
_CLIENT_ID = re.compile(r"[\x21-\x39\x3b-\x7e]{1,256}")  # visible ASCII without ':' (Basic auth)


@dataclass(frozen=True, slots=True)
class QualtricsCredentials:
    """An OAuth client of one Qualtrics brand; the subdomain is validated and lower-cased."""

    client_id: str
    client_secret: SecretStr
    subdomain: str

    def __post_init__(self) -> None:
        if not _CLIENT_ID.fullmatch(self.client_id):
            raise ValueError("The client id must be 1-256 visible ASCII characters without ':'.")
        secret = self.client_secret.get_secret_value()
        if not secret or not secret.isprintable():
            raise ValueError("The client secret must be non-empty printable text.")
        object.__setattr__(self, "subdomain", validate_subdomain(self.subdomain))


class QualtricsClient:
    """Typed Qualtrics API v3 calls for one set of credentials, over a borrowed AsyncClient."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        *,
        tokens: TokenManager,
        base_url_template: str = DEFAULT_BASE_URL_TEMPLATE,
        scope: str | None = None,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
        deadline: float = REQUEST_DEADLINE,
        clock: Clock = time.time,
    ) -> None:
        if scope is not None and not _SCOPE.fullmatch(scope):
            raise ValueError("scope must be space-separated OAuth scope tokens")
        self._http = http
        self._credentials = credentials
        self._tokens = tokens
        self._base = build_base_url(credentials.subdomain, base_url_template)
        self._scope = scope
        self._max_body_bytes = max_body_bytes
        self._deadline = deadline
        self._clock = clock
        self._token_key = token_cache_key(
            subdomain=credentials.subdomain,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret.get_secret_value(),
            scope=scope or "",
        )

    def __repr__(self) -> str:
        client_id = self._credentials.client_id
        return f"QualtricsClient(base_url={self._base.url!r}, client_id={client_id!r})"

    @property
    def base_url(self) -> QualtricsBaseUrl:
        return self._base

    # -- API calls ---------------------------------------------------------------------

    async def whoami(self) -> WhoAmI:
        """The user and brand behind the credentials: verifies them (design §1 step 1)."""
        return (await self._api("GET", "whoami")).model(WhoAmI)

    async def create_survey(
        self, name: str, language: str = "EN", project_category: str = "CORE"
    ) -> CreatedSurvey:
        """A new, inactive survey with a default block."""
        body = {"SurveyName": name, "Language": language, "ProjectCategory": project_category}
        reply = await self._api("POST", "survey-definitions", json_body=body)
        return reply.model(CreatedSurvey)

    async def get_survey_definition(self, survey_id: str) -> dict[str, Any]:
        """The full definition (questions, blocks, flow, ...) as Qualtrics returns it."""
        return (await self._api("GET", "survey-definitions", valid_survey_id(survey_id))).object()

    async def create_question(
        self, survey_id: str, definition: Mapping[str, Any], block_id: str | None = None
    ) -> str:
        """Add a question (to `block_id`, else the default block); returns its QID."""
        params = {"blockId": valid_block_id(block_id)} if block_id is not None else None
        reply = await self._api(
            "POST",
            "survey-definitions",
            valid_survey_id(survey_id),
            "questions",
            json_body=definition,
            params=params,
        )
        return reply.model(CreatedQuestion).question_id

    async def update_question(
        self, survey_id: str, qid: str, definition: Mapping[str, Any]
    ) -> None:
        """Replace a question's whole definition (PUT is not a patch)."""
        await self._api(
            "PUT",
            "survey-definitions",
            valid_survey_id(survey_id),
            "questions",
            valid_question_id(qid),
            json_body=definition,
            require_result=False,
        )

    async def get_flow(self, survey_id: str) -> dict[str, Any]:
        """The survey flow (where embedded-data fields are declared)."""
        return (
            await self._api("GET", "survey-definitions", valid_survey_id(survey_id), "flow")
        ).object()

    async def update_flow(self, survey_id: str, flow: Mapping[str, Any]) -> None:
        """Replace the whole flow with `flow`."""
        await self._api(
            "PUT",
            "survey-definitions",
            valid_survey_id(survey_id),
            "flow",
            json_body=flow,
            require_result=False,
        )

    async def activate_survey(self, survey_id: str) -> None:
        """Make the survey active, so it accepts responses."""
        await self._api(
            "PUT",
            "surveys",
            valid_survey_id(survey_id),
            json_body={"isActive": True},
            require_result=False,
        )

    async def publish_version(self, survey_id: str, description: str) -> PublishedVersion:
        """Publish the current definition as a new version."""
        reply = await self._api(
            "POST",
            "survey-definitions",
            valid_survey_id(survey_id),
            "versions",
            json_body={"Description": description, "Published": True},
        )
        return reply.model(PublishedVersionResult).metadata

    async def create_response(
        self, survey_id: str, values: Mapping[str, Any], idempotency_key: str
    ) -> str:
        """Record one response; a repeat with the same key creates no duplicate (design §8)."""
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-255 visible ASCII characters")
        reply = await self._api(
            "POST",
            "surveys",
            valid_survey_id(survey_id),
            "responses",
            json_body={"values": dict(values)},
            headers={"Idempotency-Key": idempotency_key},
        )
        return reply.model(CreatedResponse).response_id

    async def delete_survey(self, survey_id: str) -> None:
        """Delete the survey and every response it holds (tests and cleanup only)."""
        await self._api(
            "DELETE", "survey-definitions", valid_survey_id(survey_id), require_result=False
        )

    # -- plumbing ----------------------------------------------------------------------

    async def _api(
        self,
        method: str,
        *segments: str,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        require_result: bool = True,
    ) -> Reply:
        url = self._base.api_url(*segments)
        token = await self._tokens.get(self._token_key, self._fetch_token)
        answer = await self._send_api(method, url, token.access_token, json_body, params, headers)
        if answer.status == 401:
            token = await self._tokens.refresh(
                self._token_key, token.access_token, self._fetch_token
            )
            answer = await self._send_api(
                method, url, token.access_token, json_body, params, headers
            )
            if answer.status == 401:
                await self._tokens.discard(self._token_key, token.access_token)
        redact = (self._secret, token.access_token)
        raise_for_status(method, url.path, answer, redact=redact, now=self._clock())
        envelope = parse_envelope(
            method, url.path, answer, redact=redact, require_result=require_result
        )
        return Reply(envelope, method, url.path)

    async def _send_api(
        self,
        method: str,
        url: httpx.URL,
        access_token: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Answer:
        sent = {**(headers or {}), "Authorization": f"Bearer {access_token}"}
        if json_body is not None:
            sent["Content-Type"] = "application/json"
        request = self._http.build_request(
            method,
            url,
            # Serialized by pydantic's core (what httpx's `json=` does with the standard
            # library, several times faster; a response body per delivery).
            content=None if json_body is None else to_json(json_body),
            params=params,
            headers=sent,
        )
        return await self._exchange(request, redact=(self._secret, access_token))

    async def _fetch_token(self) -> TokenGrant:
        """POST {base}/oauth2/token with HTTP Basic client credentials (RFC 6749 §4.4)."""
        url = self._base.token_url
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        basic = base64.b64encode(f"{self._credentials.client_id}:{self._secret}".encode()).decode()
        request = self._http.build_request(
            "POST", url, data=form, headers={"Authorization": f"Basic {basic}"}
        )
        redact = (self._secret, basic)
        answer = await self._exchange(request, redact=redact)
        raise_for_status(
            "POST", url.path, answer, redact=redact, now=self._clock(), token_endpoint=True
        )
        return parse_grant(url.path, answer)

    @property
    def _secret(self) -> str:
        return self._credentials.client_secret.get_secret_value()

    async def _exchange(self, request: httpx.Request, *, redact: tuple[str, ...]) -> Answer:
        """Send, and read at most the body cap within the deadline; transport errors mapped."""
        method, path = request.method, request.url.path
        try:
            async with asyncio.timeout(self._deadline):
                # auth=None: whatever the shared client is configured with never applies here.
                response = await self._http.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
                try:
                    body, truncated = await read_capped(response, self._max_body_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise QualtricsTimeout(
                f"Qualtrics did not answer {method} {path} within {self._deadline:g} s",
                method=method,
                path=path,
            ) from None
        except httpx.TimeoutException as exc:
            raise QualtricsTimeout(
                _transport_message("timed out", method, path, exc, redact),
                method=method,
                path=path,
            ) from exc
        except httpx.TransportError as exc:
            raise QualtricsTransportError(
                _transport_message("failed", method, path, exc, redact),
                method=method,
                path=path,
            ) from exc
        except httpx.DecodingError as exc:
            raise QualtricsProtocolError(
                _transport_message("got an undecodable body", method, path, exc, redact),
                method=method,
                path=path,
            ) from exc
        return Answer(response.status_code, response.headers, body, truncated, self._max_body_bytes)


def _transport_message(
    what: str, method: str, path: str, exc: httpx.HTTPError, redact: tuple[str, ...]
) -> str:
    detail = sanitize(str(exc), secrets=redact, limit=300) or "no detail"
    return f"Qualtrics request {method} {path} {what}: {type(exc).__name__}: {detail}"
