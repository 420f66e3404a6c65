"""QualtricsClient against respx: requests sent, results parsed, errors classified."""

import asyncio
import json
import logging
import pickle
import traceback
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from service.qualtrics import (
    InMemoryTokenCache,
    QualtricsAuthRejected,
    QualtricsBadRequest,
    QualtricsClient,
    QualtricsCredentials,
    QualtricsError,
    QualtricsForbidden,
    QualtricsNotFound,
    QualtricsProtocolError,
    QualtricsRateLimited,
    QualtricsServerError,
    QualtricsTimeout,
    QualtricsTransportError,
    TokenManager,
    create_http_client,
)
from service.qualtrics.urls import InvalidSubdomain
from tests.qualtrics.conftest import (
    BASIC,
    BLOCK,
    CLIENT_ID,
    SECRET,
    SURVEY,
    FakeClock,
    TokenEndpoint,
    failure,
    ok,
)

WHOAMI = {
    "brandId": "conclusive",
    "userId": "UR_123",
    "userName": "larry@example.com",
    "accountType": "UT_BRANDADMIN",
    "firstName": "Larry",
    "lastName": "Vincent",
    "email": "larry@example.com",
    "datacenter": "az1",
}


def assert_no_secrets(exc: BaseException, *also: str) -> None:
    """Neither the client secret, the Basic credentials nor any token leaks from `exc`."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, QualtricsError):
        texts.append(exc.body_snippet)
        texts.append(repr(exc.error_message))
    for text in texts:
        for secret in (SECRET, BASIC, *also):
            assert secret not in text


class TestCredentials:
    def test_subdomain_is_validated_and_lowercased(self) -> None:
        creds = QualtricsCredentials(CLIENT_ID, SecretStr(SECRET), "FRA1")
        assert creds.subdomain == "fra1"
        with pytest.raises(InvalidSubdomain):
            QualtricsCredentials(CLIENT_ID, SecretStr(SECRET), "evil.com#")

    @pytest.mark.parametrize("client_id", ["", "a:b", "a b", "a\nb", "é", "x" * 257])
    def test_bad_client_ids(self, client_id: str) -> None:
        with pytest.raises(ValueError, match="client id"):
            QualtricsCredentials(client_id, SecretStr(SECRET), "iad1")

    @pytest.mark.parametrize("secret", ["", "a\nb", "a\x00"])
    def test_bad_secrets_are_refused_without_echoing_them(self, secret: str) -> None:
        with pytest.raises(ValueError, match="client secret") as caught:
            QualtricsCredentials(CLIENT_ID, SecretStr(secret), "iad1")
        assert secret not in str(caught.value) or not secret

    def test_repr_hides_the_secret(
        self, credentials: QualtricsCredentials, qualtrics_client: QualtricsClient
    ) -> None:
        assert SECRET not in repr(credentials)
        assert SECRET not in str(credentials)
        assert SECRET not in repr(qualtrics_client)
        assert "iad1.qualtrics.com" in repr(qualtrics_client)

    def test_bad_scope(self, http: httpx.AsyncClient, credentials: QualtricsCredentials) -> None:
        tokens = TokenManager(InMemoryTokenCache())
        with pytest.raises(ValueError, match="scope"):
            QualtricsClient(http, credentials, tokens=tokens, scope="a\nb")


class TestTokens:
    async def test_client_credentials_grant(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        api = routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await qualtrics_client.whoami()
        token_request = routes["token"].calls.last.request
        assert token_request.headers["Authorization"] == f"Basic {BASIC}"
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert parse_qs(token_request.content.decode()) == {"grant_type": ["client_credentials"]}
        assert api.calls.last.request.headers["Authorization"] == "Bearer tok-1"

    async def test_scope_is_requested(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        client = QualtricsClient(
            http, credentials, tokens=tokens, scope="read:surveys write:surveys"
        )
        await client.whoami()
        form = parse_qs(routes["token"].calls.last.request.content.decode())
        assert form["scope"] == ["read:surveys write:surveys"]

    async def test_cached_across_calls_and_clients(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        async with create_http_client(transport=httpx.AsyncHTTPTransport()) as other_pool:
            # Two clients on two pools share one TokenManager: one fetch.
            first = QualtricsClient(http, credentials, tokens=tokens)
            second = QualtricsClient(other_pool, credentials, tokens=tokens)
            for client in (first, second, first):
                await client.whoami()
        assert routes["token"].call_count == 1

    async def test_refreshed_before_expiry(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter, clock: FakeClock
    ) -> None:
        api = routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await qualtrics_client.whoami()
        clock.advance(3600 - 61)
        await qualtrics_client.whoami()
        assert routes["token"].call_count == 1
        clock.advance(2)
        await qualtrics_client.whoami()
        assert routes["token"].call_count == 2
        assert api.calls.last.request.headers["Authorization"] == "Bearer tok-2"

    async def test_missing_expires_in_means_an_hour(
        self,
        qualtrics_client: QualtricsClient,
        routes: respx.MockRouter,
        clock: FakeClock,
        token_endpoint: TokenEndpoint,
    ) -> None:
        token_endpoint.expires_in = None
        routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await qualtrics_client.whoami()
        clock.advance(3600 - 61)
        await qualtrics_client.whoami()
        assert routes["token"].call_count == 1

    async def test_single_flight_under_concurrency(
        self,
        qualtrics_client: QualtricsClient,
        routes: respx.MockRouter,
        token_endpoint: TokenEndpoint,
    ) -> None:
        token_endpoint.delay = 0.02
        api = routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await asyncio.gather(*(qualtrics_client.whoami() for _ in range(40)))
        assert routes["token"].call_count == 1
        assert api.call_count == 40

    async def test_other_credentials_get_their_own_token(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        api = routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await QualtricsClient(http, credentials, tokens=tokens).whoami()
        rotated = QualtricsCredentials(CLIENT_ID, SecretStr(SECRET + "-new"), "iad1")
        await QualtricsClient(http, rotated, tokens=tokens).whoami()
        assert routes["token"].call_count == 2
        assert api.calls.last.request.headers["Authorization"] == "Bearer tok-2"

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(401, json={"error": "invalid_client"}),
            httpx.Response(400, json={"error": "invalid_client", "error_description": "bad"}),
            httpx.Response(400, json={"error": "unauthorized_client"}),
            failure(401, "AUTH_6.0", "invalid_client"),
            httpx.Response(401, text="nope"),
        ],
    )
    async def test_rejected_credentials(
        self,
        qualtrics_client: QualtricsClient,
        routes: respx.MockRouter,
        response: httpx.Response,
    ) -> None:
        routes["token"].mock(side_effect=None, return_value=response)
        with pytest.raises(QualtricsAuthRejected) as caught:
            await qualtrics_client.whoami()
        exc = caught.value
        assert exc.status == response.status_code
        assert exc.path == "/oauth2/token"
        assert exc.method == "POST"
        assert "refused the client credentials" in str(exc)
        assert not exc.retryable
        assert_no_secrets(exc)

    async def test_token_endpoint_other_errors(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        token = routes["token"]
        token.mock(
            side_effect=None, return_value=httpx.Response(400, json={"error": "invalid_scope"})
        )
        with pytest.raises(QualtricsBadRequest) as bad:
            await qualtrics_client.whoami()
        assert bad.value.error_code == "invalid_scope"
        token.mock(return_value=httpx.Response(503, text="down"))
        with pytest.raises(QualtricsServerError):
            await qualtrics_client.whoami()
        token.mock(return_value=httpx.Response(429, headers={"Retry-After": "5"}))
        with pytest.raises(QualtricsRateLimited) as limited:
            await qualtrics_client.whoami()
        assert limited.value.retry_after == 5.0

    @pytest.mark.parametrize(
        "body",
        [
            {"token_type": "Bearer", "expires_in": 3600},
            {"access_token": "", "expires_in": 3600},
            {"access_token": "has space tok-leak", "expires_in": 3600},
            {"access_token": "tok-leak", "token_type": "mac"},
            {"access_token": "tok-leak", "expires_in": "soon"},
            {"access_token": "tok-leak", "expires_in": True},
            {"access_token": "tok-leak", "expires_in": 0},
            {"access_token": "tok-leak", "expires_in": 10**9},
            ["tok-leak"],
        ],
    )
    async def test_unusable_token_answers(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter, body: Any
    ) -> None:
        routes["token"].mock(side_effect=None, return_value=httpx.Response(200, json=body))
        with pytest.raises(QualtricsProtocolError) as caught:
            await qualtrics_client.whoami()
        assert caught.value.body_snippet == ""  # the body may hold a token: never echoed
        assert_no_secrets(caught.value, "tok-leak")

    async def test_expires_in_as_a_string(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter, clock: FakeClock
    ) -> None:
        routes["token"].mock(
            side_effect=None,
            return_value=httpx.Response(200, json={"access_token": "t", "expires_in": "600"}),
        )
        routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
        await qualtrics_client.whoami()
        clock.advance(600 - 59)
        await qualtrics_client.whoami()
        assert routes["token"].call_count == 2

    async def test_non_json_token_answer(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes["token"].mock(side_effect=None, return_value=httpx.Response(200, text="<html>"))
        with pytest.raises(QualtricsProtocolError, match="not JSON"):
            await qualtrics_client.whoami()


class TestUnauthorized:
    async def test_one_refresh_then_success(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        api = routes.get("/API/v3/whoami").mock(
            side_effect=[failure(401, "AUTH_6.0", "invalid_client"), ok(WHOAMI)]
        )
        who = await qualtrics_client.whoami()
        assert who.brand_id == "conclusive"
        assert [call.request.headers["Authorization"] for call in api.calls] == [
            "Bearer tok-1",
            "Bearer tok-2",
        ]
        assert routes["token"].call_count == 2

    async def test_second_401_is_auth_rejected_and_forgets_the_token(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        api = routes.post(f"/API/v3/surveys/{SURVEY}/responses").mock(
            return_value=failure(401, "AUTH_6.0", "invalid_client", request_id="r-401")
        )
        with pytest.raises(QualtricsAuthRejected) as caught:
            await qualtrics_client.create_response(SURVEY, {}, idempotency_key="d-1")
        exc = caught.value
        assert api.call_count == 2
        assert routes["token"].call_count == 2
        assert "even after a token refresh" in str(exc)
        assert (exc.status, exc.error_code, exc.request_id) == (401, "AUTH_6.0", "r-401")
        assert exc.path == f"/API/v3/surveys/{SURVEY}/responses"
        assert_no_secrets(exc, "tok-1", "tok-2")
        # The rejected token is not reused: the next call starts with a fresh one.
        with pytest.raises(QualtricsAuthRejected):
            await qualtrics_client.create_response(SURVEY, {}, idempotency_key="d-1")
        assert api.calls.last.request.headers["Authorization"] == "Bearer tok-4"

    async def test_concurrent_401s_refresh_once(
        self,
        qualtrics_client: QualtricsClient,
        routes: respx.MockRouter,
        token_endpoint: TokenEndpoint,
    ) -> None:
        async def answer(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0.01)
            if request.headers["Authorization"] == "Bearer tok-1":
                return failure(401, "AUTH_6.0", "invalid_client")
            return ok(WHOAMI)

        routes.get("/API/v3/whoami").mock(side_effect=answer)
        await qualtrics_client.whoami()  # caches tok-1... which now gets rejected
        token_endpoint.delay = 0.02
        await asyncio.gather(*(qualtrics_client.whoami() for _ in range(20)))
        assert routes["token"].call_count == 2


class TestCalls:
    async def test_whoami(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.get("/API/v3/whoami").mock(return_value=ok({**WHOAMI, "extra": "ignored"}))
        who = await qualtrics_client.whoami()
        assert who.model_dump() == {
            "brand_id": "conclusive",
            "user_id": "UR_123",
            "user_name": "larry@example.com",
            "account_type": "UT_BRANDADMIN",
            "first_name": "Larry",
            "last_name": "Vincent",
            "email": "larry@example.com",
            "datacenter": "az1",
        }

    async def test_whoami_minimal(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.get("/API/v3/whoami").mock(return_value=ok({"brandId": "b", "userId": "u"}))
        who = await qualtrics_client.whoami()
        assert (who.brand_id, who.email) == ("b", None)

    async def test_create_survey(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.post("/API/v3/survey-definitions").mock(
            return_value=ok({"SurveyID": SURVEY, "DefaultBlockID": BLOCK})
        )
        created = await qualtrics_client.create_survey("Creovai insights")
        assert (created.survey_id, created.default_block_id) == (SURVEY, BLOCK)
        assert json.loads(route.calls.last.request.content) == {
            "SurveyName": "Creovai insights",
            "Language": "EN",
            "ProjectCategory": "CORE",
        }
        await qualtrics_client.create_survey("X", language="DE", project_category="CX")
        sent = json.loads(route.calls.last.request.content)
        assert (sent["Language"], sent["ProjectCategory"]) == ("DE", "CX")

    async def test_get_survey_definition(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        definition = {"SurveyID": SURVEY, "Questions": {}, "Blocks": {}}
        routes.get(f"/API/v3/survey-definitions/{SURVEY}").mock(return_value=ok(definition))
        assert await qualtrics_client.get_survey_definition(SURVEY) == definition

    async def test_create_question(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.post(f"/API/v3/survey-definitions/{SURVEY}/questions").mock(
            return_value=ok({"QuestionID": "QID7"})
        )
        definition = {"QuestionText": "Team", "QuestionType": "TE", "Selector": "SL"}
        assert await qualtrics_client.create_question(SURVEY, definition) == "QID7"
        request = route.calls.last.request
        assert request.url.query == b""
        assert json.loads(request.content) == definition
        await qualtrics_client.create_question(SURVEY, definition, block_id=BLOCK)
        assert route.calls.last.request.url.params["blockId"] == BLOCK

    async def test_update_question(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.put(f"/API/v3/survey-definitions/{SURVEY}/questions/QID7").mock(
            return_value=ok()
        )
        await qualtrics_client.update_question(SURVEY, "QID7", {"QuestionText": "New"})
        assert json.loads(route.calls.last.request.content) == {"QuestionText": "New"}

    async def test_flow(self, qualtrics_client: QualtricsClient, routes: respx.MockRouter) -> None:
        flow = {"FlowID": "FL_1", "Type": "Root", "Flow": [], "Properties": {"Count": 1}}
        routes.get(f"/API/v3/survey-definitions/{SURVEY}/flow").mock(return_value=ok(flow))
        put = routes.put(f"/API/v3/survey-definitions/{SURVEY}/flow").mock(return_value=ok())
        assert await qualtrics_client.get_flow(SURVEY) == flow
        await qualtrics_client.update_flow(SURVEY, flow)
        assert json.loads(put.calls.last.request.content) == flow

    async def test_activate_survey(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.put(f"/API/v3/surveys/{SURVEY}").mock(return_value=ok())
        await qualtrics_client.activate_survey(SURVEY)
        assert json.loads(route.calls.last.request.content) == {"isActive": True}

    async def test_publish_version(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.post(f"/API/v3/survey-definitions/{SURVEY}/versions").mock(
            return_value=ok(
                {
                    "metadata": {
                        "versionID": "9223370503198924109",
                        "versionNumber": 2,
                        "surveyID": SURVEY,
                        "published": True,
                    }
                }
            )
        )
        version = await qualtrics_client.publish_version(SURVEY, "fields v2")
        assert (version.version_id, version.version_number) == ("9223370503198924109", 2)
        assert json.loads(route.calls.last.request.content) == {
            "Description": "fields v2",
            "Published": True,
        }

    async def test_create_response_sends_the_idempotency_key(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.post(f"/API/v3/surveys/{SURVEY}/responses").mock(
            return_value=ok({"responseId": "R_240YEnuWbbwZOy1"})
        )
        values = {"finished": 1, "QID1_TEXT": "hello", "creovai_interaction_id": "i-1"}
        key = "7d0f5c1e-7f43-4c2e-9a55-3b8f6a1d2c40"
        assert await qualtrics_client.create_response(SURVEY, values, key) == "R_240YEnuWbbwZOy1"
        request = route.calls.last.request
        assert request.headers["Idempotency-Key"] == key
        assert request.headers["Content-Type"] == "application/json"
        assert json.loads(request.content) == {"values": values}

    @pytest.mark.parametrize("key", ["", "a b", "a\nb", "é", "x" * 256])
    async def test_bad_idempotency_keys(self, qualtrics_client: QualtricsClient, key: str) -> None:
        with pytest.raises(ValueError, match="idempotency_key"):
            await qualtrics_client.create_response(SURVEY, {}, key)

    async def test_delete_survey(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        route = routes.delete(f"/API/v3/survey-definitions/{SURVEY}").mock(
            return_value=ok({"DeletedDate": "2026-01-01T00:00:00Z"})
        )
        await qualtrics_client.delete_survey(SURVEY)
        assert route.called

    async def test_empty_body_is_fine_when_no_result_is_needed(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.put(f"/API/v3/surveys/{SURVEY}").mock(return_value=httpx.Response(204))
        await qualtrics_client.activate_survey(SURVEY)

    @pytest.mark.parametrize(
        "call",
        [
            lambda c: c.get_survey_definition("SV_../../whoami"),
            lambda c: c.get_flow("../SV_5vaK6JpGtrf2Ldz"),
            lambda c: c.create_question(SURVEY, {}, block_id="BL_x?y=1"),
            lambda c: c.update_question(SURVEY, "QID1/../../x", {}),
            lambda c: c.activate_survey("SV_5vaK6JpGtrf2Ldz%2F"),
            lambda c: c.create_response("SV_short", {}, "k"),
            lambda c: c.delete_survey("SV_5vaK6JpGtrf2Ldz\n"),
        ],
    )
    async def test_bad_ids_never_reach_a_url(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter, call: Any
    ) -> None:
        with pytest.raises(ValueError, match="does not match"):
            await call(qualtrics_client)
        assert not routes.calls

    async def test_configured_template(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        token_endpoint: TokenEndpoint,
    ) -> None:
        with respx.mock(base_url="http://127.0.0.1:8099/iad1") as local:
            local.post("/oauth2/token").mock(side_effect=token_endpoint)
            local.get("/API/v3/whoami").mock(return_value=ok(WHOAMI))
            client = QualtricsClient(
                http,
                credentials,
                tokens=tokens,
                base_url_template="http://127.0.0.1:8099/{subdomain}",
            )
            assert (await client.whoami()).brand_id == "conclusive"

    async def test_proxied_notice_is_logged(
        self,
        qualtrics_client: QualtricsClient,
        routes: respx.MockRouter,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        notice = "Request proxied. For faster response times, use this host instead: sjc1"
        routes.get("/API/v3/whoami").mock(return_value=ok(WHOAMI, notice=notice))
        with caplog.at_level(logging.WARNING, logger="service.qualtrics.answers"):
            await qualtrics_client.whoami()
        assert notice in caplog.text


class TestErrorMapping:
    async def call(self, client: QualtricsClient) -> str:
        return await client.create_response(SURVEY, {"finished": 1}, idempotency_key="d-1")

    @pytest.fixture
    def responses(self, routes: respx.MockRouter) -> respx.Route:
        return routes.post(f"/API/v3/surveys/{SURVEY}/responses")

    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, QualtricsBadRequest),
            (403, QualtricsForbidden),
            (404, QualtricsNotFound),
            (409, QualtricsBadRequest),
            (413, QualtricsBadRequest),
            (422, QualtricsBadRequest),
        ],
    )
    async def test_client_errors(
        self,
        qualtrics_client: QualtricsClient,
        responses: respx.Route,
        status: int,
        cls: type[QualtricsError],
    ) -> None:
        responses.mock(return_value=failure(status, "MSTC_1", "Invalid survey ID"))
        with pytest.raises(cls) as caught:
            await self.call(qualtrics_client)
        exc = caught.value
        assert type(exc) is cls
        assert (exc.status, exc.error_code, exc.error_message, exc.request_id) == (
            status,
            "MSTC_1",
            "Invalid survey ID",
            "req-123",
        )
        assert exc.method == "POST"
        assert exc.path == f"/API/v3/surveys/{SURVEY}/responses"
        assert f"-> {status} MSTC_1: Invalid survey ID (requestId req-123)" in str(exc)
        assert "MSTC_1" in exc.body_snippet
        assert not exc.retryable
        assert responses.call_count == 1  # never retried here

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ({"Retry-After": "7"}, 7.0),
            ({"Retry-After": formatdate(1_750_000_000.0 + 90, usegmt=True)}, 90.0),
            ({}, None),
            ({"Retry-After": "whenever"}, None),
        ],
    )
    async def test_rate_limited(
        self,
        qualtrics_client: QualtricsClient,
        responses: respx.Route,
        header: dict[str, str],
        expected: float | None,
    ) -> None:
        responses.mock(return_value=failure(429, "TOO_MANY", "Too many requests", headers=header))
        with pytest.raises(QualtricsRateLimited) as caught:
            await self.call(qualtrics_client)
        exc = caught.value
        assert exc.retry_after == expected
        assert exc.retryable
        assert exc.status == 429

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors(
        self, qualtrics_client: QualtricsClient, responses: respx.Route, status: int
    ) -> None:
        responses.mock(
            return_value=failure(status, "SURVEYS_1.2", "Internal error", instance_id="i-42")
        )
        with pytest.raises(QualtricsServerError) as caught:
            await self.call(qualtrics_client)
        exc = caught.value
        assert (exc.status, exc.instance_id, exc.error_code) == (status, "i-42", "SURVEYS_1.2")
        assert "instanceId i-42" in str(exc)
        assert exc.retryable

    async def test_server_error_with_an_html_body(
        self, qualtrics_client: QualtricsClient, responses: respx.Route
    ) -> None:
        responses.mock(return_value=httpx.Response(502, text="<html>Bad gateway</html>"))
        with pytest.raises(QualtricsServerError) as caught:
            await self.call(qualtrics_client)
        assert caught.value.error_code is None
        assert caught.value.body_snippet == "<html>Bad gateway</html>"

    async def test_error_body_is_capped(
        self, qualtrics_client: QualtricsClient, responses: respx.Route
    ) -> None:
        responses.mock(return_value=httpx.Response(503, text="x" * 5_000_000))
        with pytest.raises(QualtricsServerError) as caught:
            await self.call(qualtrics_client)
        assert len(caught.value.body_snippet) <= 2049

    @pytest.mark.parametrize(
        ("effect", "cls"),
        [
            (httpx.ConnectTimeout, QualtricsTimeout),
            (httpx.ReadTimeout, QualtricsTimeout),
            (httpx.WriteTimeout, QualtricsTimeout),
            (httpx.PoolTimeout, QualtricsTimeout),
            (httpx.ConnectError, QualtricsTransportError),
            (httpx.ReadError, QualtricsTransportError),
            (httpx.RemoteProtocolError, QualtricsTransportError),
        ],
    )
    async def test_transport_errors(
        self,
        qualtrics_client: QualtricsClient,
        responses: respx.Route,
        effect: type[Exception],
        cls: type[QualtricsError],
    ) -> None:
        responses.mock(side_effect=effect)
        with pytest.raises(cls) as caught:
            await self.call(qualtrics_client)
        exc = caught.value
        assert type(exc) is cls
        assert exc.retryable
        assert exc.status is None
        assert effect.__name__ in str(exc)
        assert_no_secrets(exc, "tok-1")

    async def test_request_deadline(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        async def drip() -> AsyncIterator[bytes]:
            while True:  # a server that sends a byte now and then, forever
                await asyncio.sleep(0.01)
                yield b" "

        routes.get("/API/v3/whoami").mock(return_value=httpx.Response(200, content=drip()))
        client = QualtricsClient(http, credentials, tokens=tokens, deadline=0.2)
        with pytest.raises(QualtricsTimeout, match=r"within 0\.2 s"):
            await client.whoami()

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    async def test_redirects_are_never_followed(
        self, qualtrics_client: QualtricsClient, responses: respx.Route, status: int
    ) -> None:
        with respx.mock(assert_all_called=False) as elsewhere:
            evil = elsewhere.route(host="evil.example").mock(return_value=ok({"responseId": "R_x"}))
            responses.mock(
                return_value=httpx.Response(
                    status, headers={"Location": "https://evil.example/steal?token=abc"}
                )
            )
            with pytest.raises(QualtricsProtocolError) as caught:
                await self.call(qualtrics_client)
            assert not evil.called
        exc = caught.value
        assert exc.status == status
        assert "redirect to https://evil.example" in str(exc)
        assert "token=abc" not in str(exc)
        assert not exc.retryable

    async def test_redirects_not_followed_even_if_the_pool_would(
        self,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        routes.get("/API/v3/whoami").mock(
            return_value=httpx.Response(302, headers={"Location": "/elsewhere"})
        )
        elsewhere = routes.get("/elsewhere").mock(return_value=ok(WHOAMI))
        async with httpx.AsyncClient(follow_redirects=True) as permissive:
            client = QualtricsClient(permissive, credentials, tokens=tokens)
            with pytest.raises(QualtricsProtocolError, match="same host"):
                await client.whoami()
        assert not elsewhere.called

    async def test_oversized_body_by_content_length(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.get(f"/API/v3/survey-definitions/{SURVEY}").mock(
            return_value=httpx.Response(200, content=b"{" + b" " * (1024 * 1024 + 10) + b"}")
        )
        with pytest.raises(QualtricsProtocolError, match="over the 1048576-byte limit"):
            await qualtrics_client.get_survey_definition(SURVEY)

    async def test_endless_body_is_cut_off(
        self,
        http: httpx.AsyncClient,
        credentials: QualtricsCredentials,
        tokens: TokenManager,
        routes: respx.MockRouter,
    ) -> None:
        sent = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal sent
            while True:
                sent += 64 * 1024
                yield b"x" * (64 * 1024)

        routes.get("/API/v3/whoami").mock(return_value=httpx.Response(200, content=endless()))
        client = QualtricsClient(http, credentials, tokens=tokens, max_body_bytes=256 * 1024)
        with pytest.raises(QualtricsProtocolError, match="over the 262144-byte limit") as caught:
            await client.whoami()
        assert sent <= 512 * 1024
        assert len(caught.value.body_snippet) <= 2049

    @pytest.mark.parametrize(
        ("response", "match"),
        [
            (httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
            (httpx.Response(200, content=b"\xff\xfe\xfa"), "not JSON"),
            (httpx.Response(200, text="[" * 100_000 + "]" * 100_000), "not JSON"),
            (httpx.Response(200, json=[1, 2]), "not a Qualtrics result envelope"),
            (httpx.Response(200, json={"meta": {}}), "not a Qualtrics result envelope"),
            (httpx.Response(200, json={"result": None}), "not a Qualtrics result envelope"),
            (httpx.Response(200, json={"result": {}, "meta": "x"}), "malformed `meta`"),
            (ok({"responseId": "../../x"}), "unexpected result"),
            (ok({"responseId": 5}), "unexpected result"),
            (ok({"ResponseID": "R_1"}), "unexpected result"),
        ],
    )
    async def test_unexpected_success_bodies(
        self,
        qualtrics_client: QualtricsClient,
        responses: respx.Route,
        response: httpx.Response,
        match: str,
    ) -> None:
        responses.mock(return_value=response)
        with pytest.raises(QualtricsProtocolError, match=match) as caught:
            await self.call(qualtrics_client)
        assert not caught.value.retryable

    async def test_non_object_results(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.get(f"/API/v3/survey-definitions/{SURVEY}/flow").mock(return_value=ok([1]))
        with pytest.raises(QualtricsProtocolError, match="not an object"):
            await qualtrics_client.get_flow(SURVEY)

    async def test_undecodable_body(
        self, qualtrics_client: QualtricsClient, responses: respx.Route
    ) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b"not gzip at all"

        responses.mock(
            return_value=httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=body())
        )
        with pytest.raises(QualtricsProtocolError, match="undecodable body"):
            await self.call(qualtrics_client)

    async def test_unexpected_status(
        self, qualtrics_client: QualtricsClient, responses: respx.Route
    ) -> None:
        responses.mock(return_value=httpx.Response(600))
        with pytest.raises(QualtricsProtocolError, match="not an HTTP status"):
            await self.call(qualtrics_client)

    async def test_errors_pickle(
        self, qualtrics_client: QualtricsClient, responses: respx.Route
    ) -> None:
        responses.mock(return_value=failure(429, "X", "slow", headers={"Retry-After": "3"}))
        with pytest.raises(QualtricsRateLimited) as caught:
            await self.call(qualtrics_client)
        copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 (our own bytes)
        assert (copy.retry_after, copy.status, str(copy)) == (3.0, 429, str(caught.value))


class TestSecretsNeverLeak:
    async def test_echoed_credentials_are_redacted(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        """A server (or proxy) that echoes the request back must not leak it into our errors."""

        def echo(request: httpx.Request) -> httpx.Response:
            text = f"you sent {request.headers['Authorization']} and {SECRET}"
            return failure(400, "ECHO", text)

        routes.get("/API/v3/whoami").mock(side_effect=echo)
        with pytest.raises(QualtricsBadRequest) as caught:
            await qualtrics_client.whoami()
        assert_no_secrets(caught.value, "tok-1")
        assert "[redacted]" in (caught.value.error_message or "")

    async def test_token_endpoint_echo_is_redacted(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        def echo(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                401,
                json={
                    "error": "invalid_client",
                    "error_description": f"{request.headers['Authorization']} / {SECRET}",
                },
            )

        routes["token"].mock(side_effect=echo)
        with pytest.raises(QualtricsAuthRejected) as caught:
            await qualtrics_client.whoami()
        assert_no_secrets(caught.value)

    async def test_transport_error_with_the_secret_in_its_message(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes["token"].mock(side_effect=httpx.ConnectError(f"refused {SECRET} {BASIC}"))
        with pytest.raises(QualtricsTransportError) as caught:
            await qualtrics_client.whoami()
        assert SECRET not in str(caught.value)
        assert BASIC not in str(caught.value)

    async def test_protocol_error_snippets_are_redacted(
        self, qualtrics_client: QualtricsClient, routes: respx.MockRouter
    ) -> None:
        routes.get("/API/v3/whoami").mock(
            return_value=httpx.Response(200, text=f"not json tok-1 {SECRET}")
        )
        with pytest.raises(QualtricsProtocolError) as caught:
            await qualtrics_client.whoami()
        assert_no_secrets(caught.value, "tok-1")
