"""The HTTP control surface under /_fake/, as a benchmark or fault script would use it."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.testing.fake_qualtrics import FakeQualtrics

from .helpers import error_of, result_of

ACCOUNT = {
    "client_id": "bench",
    "client_secret": "pw",
    "datacenter": "load",
    "brand_id": "loadbrand",
    "email": "bench@example.com",
}


async def bench_api(http: httpx.AsyncClient) -> dict[str, str]:
    """Register the benchmark account over HTTP and return its bearer header."""
    assert (await http.post("/_fake/accounts", json=ACCOUNT)).status_code == 201
    token = await http.post(
        "/load/oauth2/token", auth=("bench", "pw"), data={"grant_type": "client_credentials"}
    )
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def new_survey(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await http.post(
        "/load/API/v3/survey-definitions",
        headers=headers,
        json={"SurveyName": "bench", "Language": "EN", "ProjectCategory": "CORE"},
    )
    survey_id: str = result_of(response)["SurveyID"]
    return survey_id


class TestAccountsAndClock:
    async def test_register_then_authenticate(self, http: httpx.AsyncClient) -> None:
        headers = await bench_api(http)

        whoami = result_of(await http.get("/load/API/v3/whoami", headers=headers))
        accounts = (await http.get("/_fake/accounts")).json()

        assert whoami["email"] == "bench@example.com"
        assert [account["client_id"] for account in accounts] == ["bench"]

    async def test_duplicate_and_invalid_accounts(self, http: httpx.AsyncClient) -> None:
        await http.post("/_fake/accounts", json=ACCOUNT)

        duplicate = await http.post("/_fake/accounts", json=ACCOUNT)
        invalid = await http.post("/_fake/accounts", json={"client_id": "x"})

        assert duplicate.status_code == 409
        assert invalid.status_code == 400
        assert invalid.json()["details"]

    async def test_revoke_tokens_and_credentials(self, http: httpx.AsyncClient) -> None:
        headers = await bench_api(http)

        revoked = await http.post("/_fake/accounts/bench/revoke-tokens")
        after_revoke = await http.get("/load/API/v3/whoami", headers=headers)
        disabled = await http.post("/_fake/accounts/bench/revoke-credentials")
        token = await http.post(
            "/load/oauth2/token", auth=("bench", "pw"), data={"grant_type": "client_credentials"}
        )
        unknown = await http.post("/_fake/accounts/nobody/revoke-tokens")

        assert revoked.json() == {"revoked": 1}
        error_of(after_revoke, 401)
        assert disabled.status_code == 200
        assert token.status_code == 401
        assert unknown.status_code == 404

    async def test_clock_control_expires_tokens(self, http: httpx.AsyncClient) -> None:
        frozen = await http.put("/_fake/clock", json={"now": "2030-01-01T00:00:00Z"})
        headers = await bench_api(http)
        advanced = await http.post("/_fake/clock/advance", json={"seconds": 3600})

        assert frozen.json() == {"now": "2030-01-01T00:00:00Z"}
        assert advanced.json() == {"now": "2030-01-01T01:00:00Z"}
        assert (await http.get("/_fake/clock")).json() == {"now": "2030-01-01T01:00:00Z"}
        error_of(await http.get("/load/API/v3/whoami", headers=headers), 401)

    async def test_a_naive_clock_is_refused(self, http: httpx.AsyncClient) -> None:
        response = await http.put("/_fake/clock", json={"now": "2030-01-01T00:00:00"})

        assert response.status_code == 400


class TestConfigAndFaults:
    async def test_patch_config_sets_latency_and_rate_limit(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        patch = {"latency_seconds": 0.05, "rate_limit": {"requests_per_second": 10}}

        response = await http.patch("/_fake/config", json=patch)

        assert response.status_code == 200
        assert response.json()["latency_seconds"] == 0.05
        assert response.json()["rate_limit"]["requests_per_second"] == 10
        assert fake.config.rate_limit is not None
        assert fake.config.rate_limit.requests_per_second == 10
        assert fake.config.strict_response_values is True
        assert (await http.get("/_fake/config")).json() == response.json()

    @pytest.mark.parametrize(
        "patch", [{"latency_seconds": -1}, {"unknown": 1}, {"rate_limit": {"burst": 0}}]
    )
    async def test_invalid_config_is_refused(
        self, http: httpx.AsyncClient, fake: FakeQualtrics, patch: dict[str, Any]
    ) -> None:
        response = await http.patch("/_fake/config", json=patch)

        assert response.status_code == 400
        assert fake.config.latency_seconds == 0

    async def test_faults_over_http(self, http: httpx.AsyncClient) -> None:
        headers = await bench_api(http)
        fault = {"kind": "status", "status": 500, "path_pattern": "/whoami$", "count": 2}

        created = await http.post("/_fake/faults", json=fault)
        listed = (await http.get("/_fake/faults")).json()
        failed = await http.get("/load/API/v3/whoami", headers=headers)
        remaining = (await http.get("/_fake/faults")).json()
        cleared = await http.delete("/_fake/faults")

        assert created.status_code == 201
        assert [item["id"] for item in listed] == [created.json()["id"]]
        error_of(failed, 500)
        assert remaining[0]["count"] == 1
        assert cleared.status_code == 200
        assert (await http.get("/load/API/v3/whoami", headers=headers)).status_code == 200

    async def test_invalid_faults_are_400(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/_fake/faults", json={"kind": "explode"})

        assert response.status_code == 400

    async def test_control_calls_are_not_faulted_or_counted(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("status", count=None)

        response = await http.get("/_fake/health")

        assert response.json() == {"status": "ok"}
        assert fake.stats.total == 0


class TestInspection:
    async def test_surveys_questions_embedded_fields_and_responses(
        self, http: httpx.AsyncClient
    ) -> None:
        headers = await bench_api(http)
        survey_id = await new_survey(http, headers)
        base = f"/load/API/v3/survey-definitions/{survey_id}"
        await http.post(
            f"{base}/questions",
            headers=headers,
            json={"QuestionText": "Agent", "QuestionType": "TE", "Selector": "SL"},
        )
        await http.post(
            f"/load/API/v3/surveys/{survey_id}/responses",
            headers={**headers, "Idempotency-Key": "d-1"},
            json={"values": {"QID1_TEXT": "Ada"}},
        )

        surveys = (await http.get("/_fake/surveys")).json()
        detail = (await http.get(f"/_fake/surveys/{survey_id}")).json()
        responses = (await http.get(f"/_fake/surveys/{survey_id}/responses")).json()

        assert [(s["id"], s["brandId"]) for s in surveys] == [(survey_id, "loadbrand")]
        assert [q["QuestionID"] for q in detail["questions"]] == ["QID1"]
        assert detail["embeddedFields"] == []
        assert detail["responseCount"] == 1
        assert detail["definition"]["SurveyID"] == survey_id
        assert responses[0]["values"] == {"QID1_TEXT": "Ada"}
        assert responses[0]["idempotencyKey"] == "d-1"

    async def test_recorded_time_to_the_microsecond_on_the_control_surface_only(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        headers = await bench_api(http)
        survey_id = await new_survey(http, headers)
        moment = datetime(2024, 5, 1, 10, 0, 7, 123456, UTC)
        fake.clock.set(moment)
        created = await http.post(
            f"/load/API/v3/surveys/{survey_id}/responses",
            headers=headers,
            json={"values": {}},
        )
        response_id = result_of(created)["responseId"]

        [stored] = (await http.get(f"/_fake/surveys/{survey_id}/responses")).json()
        read = result_of(
            await http.get(
                f"/load/API/v3/surveys/{survey_id}/responses/{response_id}", headers=headers
            )
        )

        # Control surface: the Qualtrics-shaped whole-second date, plus the precise moment.
        assert stored["recordedDate"] == "2024-05-01T10:00:07Z"
        assert stored["recordedTimestamp"] == moment.timestamp()
        assert datetime.fromtimestamp(stored["recordedTimestamp"], UTC) == moment
        # The Qualtrics API itself is unchanged: whole seconds, no extra field.
        assert read["values"]["recordedDate"] == "2024-05-01T10:00:07Z"
        assert "recordedTimestamp" not in read["values"]
        assert "recordedTimestamp" not in read

    async def test_recorded_timestamp_is_the_creation_time_in_real_time(
        self, http: httpx.AsyncClient
    ) -> None:
        headers = await bench_api(http)
        survey_id = await new_survey(http, headers)
        before = datetime.now(UTC)
        await http.post(
            f"/load/API/v3/surveys/{survey_id}/responses", headers=headers, json={"values": {}}
        )
        after = datetime.now(UTC)

        [stored] = (await http.get(f"/_fake/surveys/{survey_id}/responses")).json()

        precise = datetime.fromtimestamp(stored["recordedTimestamp"], UTC)
        assert before <= precise <= after
        # The whole-second date is the precise one truncated, as Qualtrics would show it.
        assert stored["recordedDate"] == precise.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def test_forgetting_a_surveys_responses(self, http: httpx.AsyncClient) -> None:
        headers = await bench_api(http)
        survey_id = await new_survey(http, headers)
        url = f"/load/API/v3/surveys/{survey_id}/responses"
        first = await http.post(
            url, headers={**headers, "Idempotency-Key": "k"}, json={"values": {}}
        )

        cleared = await http.delete(f"/_fake/surveys/{survey_id}/responses")
        again = await http.post(
            url, headers={**headers, "Idempotency-Key": "k"}, json={"values": {}}
        )

        assert cleared.json() == {"deleted": 1}
        assert len((await http.get(f"/_fake/surveys/{survey_id}/responses")).json()) == 1
        assert result_of(again)["responseId"] != result_of(first)["responseId"]  # key forgotten
        assert (await http.delete("/_fake/surveys/SV_missing/responses")).status_code == 404

    async def test_out_of_band_delete(self, http: httpx.AsyncClient) -> None:
        headers = await bench_api(http)
        survey_id = await new_survey(http, headers)

        deleted = await http.delete(f"/_fake/surveys/{survey_id}")

        assert deleted.status_code == 200
        error_of(await http.get(f"/load/API/v3/surveys/{survey_id}", headers=headers), 404)
        assert (await http.get(f"/_fake/surveys/{survey_id}")).status_code == 404

    async def test_stats_requests_and_reset(
        self, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        headers = await bench_api(http)
        await http.get("/load/API/v3/whoami", headers=headers)
        await http.get("/load/API/v3/missing", headers=headers)

        stats = (await http.get("/_fake/stats")).json()
        last = (await http.get("/_fake/requests", params={"limit": 1})).json()
        bad_limit = await http.get("/_fake/requests", params={"limit": "x"})
        await http.post("/_fake/reset")

        assert stats == {"total": 3, "by_status": {"200": 2, "404": 1}, "rate_limited": 0}
        assert [(r["method"], r["path"], r["status"]) for r in last] == [
            ("GET", "/API/v3/missing", 404)
        ]
        # Arrival to the microsecond, the whole-second `at` truncated from it.
        precise = datetime.fromtimestamp(last[0]["timestamp"], UTC)
        assert last[0]["at"] == precise.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert abs(precise - datetime.now(UTC)) < timedelta(seconds=30)
        assert bad_limit.status_code == 400
        assert (await http.get("/_fake/accounts")).json() == []
        assert (await http.get("/_fake/stats")).json()["total"] == 0
        assert not fake.surveys
