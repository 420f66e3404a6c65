"""OAuth client credentials, API tokens, whoami, the envelope and unknown routes."""

import base64

import httpx
import pytest

from service.testing.fake_qualtrics import Account, FakeQualtrics

from .helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    SUBDOMAIN,
    SurveyRef,
    assert_meta_only,
    error_of,
    fetch_token,
    result_of,
    te_question,
)


class TestTokenEndpoint:
    async def test_issues_a_bearer_token_for_an_hour(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await fetch_token(http)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert len(body["access_token"]) >= 32

    async def test_accepts_a_multipart_form(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await http.post(
            f"/{SUBDOMAIN}/oauth2/token",
            auth=(CLIENT_ID, CLIENT_SECRET),
            files={"grant_type": (None, "client_credentials")},
        )

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        "credentials",
        [f"{CLIENT_ID}:wrong", f"unknown-client:{CLIENT_SECRET}", None, "no-colon"],
        ids=["bad-secret", "unknown-client", "no-basic-auth", "malformed"],
    )
    async def test_bad_client_credentials_are_invalid_client(
        self, http: httpx.AsyncClient, account: Account, credentials: str | None
    ) -> None:
        headers = {}
        if credentials is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()

        response = await http.post(
            f"/{SUBDOMAIN}/oauth2/token",
            headers=headers,
            data={"grant_type": "client_credentials"},
        )

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")

    async def test_credentials_sent_in_the_form_are_not_client_authentication(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await http.post(
            f"/{SUBDOMAIN}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )

        assert response.status_code == 401

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            ({}, "invalid_request"),
            ({"grant_type": "password"}, "unsupported_grant_type"),
        ],
    )
    async def test_grant_type_must_be_client_credentials(
        self, http: httpx.AsyncClient, account: Account, data: dict[str, str], error: str
    ) -> None:
        response = await http.post(
            f"/{SUBDOMAIN}/oauth2/token", auth=(CLIENT_ID, CLIENT_SECRET), data=data
        )

        assert response.status_code == 400
        assert response.json()["error"] == error

    async def test_a_json_body_is_not_a_form(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await http.post(
            f"/{SUBDOMAIN}/oauth2/token",
            auth=(CLIENT_ID, CLIENT_SECRET),
            json={"grant_type": "client_credentials"},
        )

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    async def test_credentials_only_work_at_their_datacenter(
        self, http: httpx.AsyncClient, account: Account, fake: FakeQualtrics
    ) -> None:
        fake.register_account("elsewhere", "pw", datacenter="other", brand_id="b")
        response = await fetch_token(http, subdomain="other")

        assert response.status_code == 401

    async def test_a_datacenter_without_accounts_is_not_a_qualtrics_host(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await fetch_token(http, subdomain="nowhere")

        assert response.status_code == 404
        assert response.json()["meta"]["error"]["errorMessage"] == "Unknown datacenter 'nowhere'"

    async def test_scopes_outside_the_account_are_refused(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.register_account(
            "scoped", "pw", datacenter="acme", brand_id="b", scopes=frozenset({"read:surveys"})
        )

        def request(scope: str) -> dict[str, str]:
            return {"grant_type": "client_credentials", "scope": scope}

        granted = await http.post(
            "/acme/oauth2/token", auth=("scoped", "pw"), data=request("read:surveys")
        )
        refused = await http.post(
            "/acme/oauth2/token", auth=("scoped", "pw"), data=request("write:surveys")
        )

        assert granted.json()["scope"] == "read:surveys"
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_scope"


class TestBearerTokens:
    async def test_whoami_shows_the_account(self, api: httpx.AsyncClient, account: Account) -> None:
        result = result_of(await api.get("/whoami"))

        assert result == {
            "brandId": account.brand_id,
            "userId": account.user_id,
            "userName": account.user_name,
            "accountType": "UT_BRANDADMIN",
            "firstName": "Ada",
            "lastName": "User",
            "email": account.email,
            "datacenter": SUBDOMAIN,
        }
        assert account.user_id.startswith("UR_")

    async def test_a_token_expires_after_its_lifetime_on_the_fake_clock(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.advance_clock(3599)
        assert (await api.get("/whoami")).status_code == 200

        fake.advance_clock(1)

        error_of(await api.get("/whoami"), 401, "AUTH_6.0")

    async def test_expiry_follows_a_frozen_clock(
        self, http: httpx.AsyncClient, account: Account, fake: FakeQualtrics
    ) -> None:
        fake.set_clock(fake.now())
        token = (await fetch_token(http)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        fake.advance_clock(3600)

        response = await http.get(f"/{SUBDOMAIN}/API/v3/whoami", headers=headers)

        assert error_of(response, 401)["errorMessage"] == "invalid_client"

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
        ids=["missing", "unknown", "wrong-scheme"],
    )
    async def test_missing_or_unknown_tokens_are_401(
        self, http: httpx.AsyncClient, account: Account, headers: dict[str, str]
    ) -> None:
        response = await http.get(f"/{SUBDOMAIN}/API/v3/whoami", headers=headers)

        error_of(response, 401, "AUTH_6.0")

    async def test_a_token_only_works_at_its_datacenter(
        self, http: httpx.AsyncClient, token: str
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"}

        response = await http.get("/otherdc/API/v3/whoami", headers=headers)

        error_of(response, 401, "AUTH_6.0")

    async def test_the_scheme_name_is_case_insensitive(
        self, http: httpx.AsyncClient, token: str
    ) -> None:
        response = await http.get(
            f"/{SUBDOMAIN}/API/v3/whoami", headers={"Authorization": f"bearer {token}"}
        )

        assert response.status_code == 200

    async def test_revoked_tokens_fail_but_new_ones_work(
        self, api: httpx.AsyncClient, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        assert fake.revoke_tokens(CLIENT_ID) == 1

        error_of(await api.get("/whoami"), 401)
        assert (await fetch_token(http)).status_code == 200

    async def test_revoked_credentials_fail_everywhere(
        self, api: httpx.AsyncClient, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.revoke_credentials(CLIENT_ID)

        error_of(await api.get("/whoami"), 401)
        assert (await fetch_token(http)).json()["error"] == "invalid_client"


class TestApiTokens:
    async def test_x_api_token_authenticates_at_any_datacenter(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.register_account("c", "s", datacenter="iad1", brand_id="b", api_token="tok123")

        response = await http.get("/sjc1/API/v3/whoami", headers={"x-api-token": "tok123"})

        assert result_of(response)["brandId"] == "b"

    async def test_an_unknown_api_token_is_dcd_7(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        response = await http.get("/acme/API/v3/whoami", headers={"X-API-TOKEN": "nope"})

        error = error_of(response, 401, "DCD_7")
        assert error["errorMessage"] == "Unrecognized X-API-TOKEN."


class TestHostRouting:
    async def test_unprefixed_paths_take_the_datacenter_from_the_host(
        self, http: httpx.AsyncClient, account: Account
    ) -> None:
        host = {"Host": f"{SUBDOMAIN}.qualtrics.com"}
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        token_response = await http.post(
            "/oauth2/token",
            headers={**host, "Authorization": f"Basic {basic}"},
            data={"grant_type": "client_credentials"},
        )
        bearer = {"Authorization": f"Bearer {token_response.json()['access_token']}"}

        response = await http.get("/API/v3/whoami", headers={**host, **bearer})
        elsewhere = await http.get(
            "/API/v3/whoami", headers={"Host": "fra1.qualtrics.com", **bearer}
        )

        assert result_of(response)["datacenter"] == SUBDOMAIN
        error_of(elsewhere, 401)


class TestEnvelope:
    async def test_every_answer_has_a_fresh_request_id(self, api: httpx.AsyncClient) -> None:
        first = await api.get("/whoami")
        second = await api.get("/whoami")

        result_of(first)
        assert first.json()["meta"]["requestId"] != second.json()["meta"]["requestId"]
        assert first.json()["meta"]["httpStatus"] == "200 - OK"
        assert first.headers["content-type"] == "application/json"

    async def test_an_unknown_route_is_a_404_envelope(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/doesnotexist")

        error = error_of(response, 404, "QMST_2.2")
        assert error["errorMessage"] == "API call does not exist: GET /API/v3/doesnotexist"
        assert response.json()["meta"]["httpStatus"] == "404 - Not Found"

    async def test_a_wrong_method_is_an_error_envelope(self, api: httpx.AsyncClient) -> None:
        response = await api.delete("/whoami")

        error_of(response, 405)

    async def test_an_unknown_route_outside_the_api_is_a_404_envelope(
        self, http: httpx.AsyncClient
    ) -> None:
        error_of(await http.get("/"), 404)

    async def test_put_and_delete_successes_are_meta_only(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        question = await api.post(f"/survey-definitions/{survey.id}/questions", json=te_question())
        question_id = result_of(question)["QuestionID"]

        assert_meta_only(await api.put(f"/surveys/{survey.id}", json={"isActive": True}))
        assert_meta_only(
            await api.delete(f"/survey-definitions/{survey.id}/questions/{question_id}")
        )
