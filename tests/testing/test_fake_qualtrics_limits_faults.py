"""The 429 limiter, injected faults and artificial latency."""

import asyncio
import time

import httpx
import pytest

from service.testing.fake_qualtrics import Account, FakeQualtrics, SimulatedConnectionReset

from .helpers import SurveyRef, error_of, fetch_token, result_of


class TestRateLimit:
    async def test_requests_over_the_brand_rate_get_429_until_the_bucket_refills(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.set_clock(fake.now())
        fake.set_rate_limit(requests_per_second=2)

        statuses = [(await api.get("/whoami")).status_code for _ in range(3)]
        limited = await api.get("/whoami")
        fake.advance_clock(0.5)
        after_refill = await api.get("/whoami")

        assert statuses == [200, 200, 429]
        error_of(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert limited.headers["retry-after"] == "1"
        assert after_refill.status_code == 200
        assert fake.stats.rate_limited == 2

    async def test_the_bucket_is_shared_by_the_brand_not_the_token(
        self, api: httpx.AsyncClient, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.set_clock(fake.now())
        fake.set_rate_limit(requests_per_second=1, burst=2)
        second_token = (await fetch_token(http)).json()["access_token"]
        other = {"Authorization": f"Bearer {second_token}"}

        await api.get("/whoami")
        await api.get("/whoami")
        response = await http.get("/acme/API/v3/whoami", headers=other)

        error_of(response, 429)

    async def test_retry_after_can_be_left_out(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.set_clock(fake.now())
        fake.set_rate_limit(requests_per_second=1, retry_after=False)

        await api.get("/whoami")
        response = await api.get("/whoami")

        error_of(response, 429)
        assert "retry-after" not in response.headers

    async def test_too_many_requests_in_flight_per_token_get_429(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.set_rate_limit(max_concurrent_per_token=2)
        fake.set_latency(0.1)

        answers = await asyncio.gather(*(api.get("/whoami") for _ in range(5)))

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 200, 429, 429, 429]
        limited = next(answer for answer in answers if answer.status_code == 429)
        assert "concurrent" in error_of(limited, 429)["errorMessage"]
        assert (await api.get("/whoami")).status_code == 200

    async def test_turning_the_limit_off(self, api: httpx.AsyncClient, fake: FakeQualtrics) -> None:
        fake.set_clock(fake.now())
        fake.set_rate_limit(requests_per_second=1)
        await api.get("/whoami")

        fake.set_rate_limit()

        assert (await api.get("/whoami")).status_code == 200


class TestFaults:
    async def test_the_next_n_matching_requests_get_the_status_with_an_instance_id(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("status", status=503, count=2, path_pattern=r"/responses$")
        path = f"/surveys/{survey.id}/responses"

        unmatched = await api.get("/whoami")
        first = await api.post(path, json={"values": {}})
        second = await api.post(path, json={"values": {}})
        third = await api.post(path, json={"values": {}})

        assert unmatched.status_code == 200
        for response in (first, second):
            error = error_of(response, 503, "MSTC_1")
            assert len(error["instanceId"]) == 32
        assert (
            first.json()["meta"]["error"]["instanceId"]
            != (second.json()["meta"]["error"]["instanceId"])
        )
        result_of(third)
        assert len(fake.responses(survey.id)) == 1
        assert fake.faults.pending() == []

    async def test_method_datacenter_code_and_retry_after_are_honoured(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault(
            "status",
            status=429,
            method="get",
            datacenter="acme",
            error_code="X_1",
            error_message="slow down",
            retry_after=7,
            count=None,
        )

        response = await api.get("/whoami")
        posted = await api.post("/survey-definitions", json={})

        assert error_of(response, 429, "X_1")["errorMessage"] == "slow down"
        assert "instanceId" not in response.json()["meta"]["error"]
        assert response.headers["retry-after"] == "7"
        assert posted.status_code == 400
        assert (await api.get("/whoami")).status_code == 429

    async def test_the_token_endpoint_can_fail_too(
        self, http: httpx.AsyncClient, fake: FakeQualtrics, account: Account
    ) -> None:
        fake.inject_fault("status", status=500, path_pattern="^/oauth2/token$")

        error_of(await fetch_token(http), 500)
        assert (await fetch_token(http)).status_code == 200

    async def test_hang_delays_the_answer(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("hang", seconds=0.2)

        started = time.monotonic()
        response = await api.get("/whoami")

        assert time.monotonic() - started >= 0.2
        assert response.status_code == 200

    async def test_reset_drops_the_connection(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("reset")

        with pytest.raises(httpx.RemoteProtocolError):
            await api.get("/whoami")

        assert fake.request_log[-1].fault == "reset"
        assert fake.request_log[-1].status is None
        assert issubclass(SimulatedConnectionReset, httpx.TransportError)

    async def test_redirect_points_elsewhere(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("redirect", location="http://169.254.169.254/latest/meta-data")

        response = await api.get("/whoami")

        assert response.status_code == 302
        assert response.headers["location"] == "http://169.254.169.254/latest/meta-data"

    @pytest.mark.parametrize("size", [5 * 1024 * 1024 + 3, 10])
    async def test_an_oversized_body_has_exactly_the_requested_size(
        self, api: httpx.AsyncClient, fake: FakeQualtrics, size: int
    ) -> None:
        fake.inject_fault("body", body_bytes=size)

        response = await api.get("/whoami")

        assert response.status_code == 200
        assert len(response.content) == size
        assert response.headers["content-length"] == str(size)

    async def test_an_after_fault_keeps_the_state_change(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("status", status=504, phase="after", path_pattern="/responses$")
        path = f"/surveys/{survey.id}/responses"
        headers = {"Idempotency-Key": "delivery-7"}

        lost = await api.post(path, json={"values": {}}, headers=headers)
        retried = await api.post(path, json={"values": {}}, headers=headers)

        error_of(lost, 504)
        [stored] = fake.responses(survey.id)
        assert result_of(retried)["responseId"] == stored.response_id

    async def test_an_after_reset_keeps_the_state_change(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.inject_fault("reset", phase="after", method="POST")

        with pytest.raises(httpx.RemoteProtocolError):
            await api.post(f"/surveys/{survey.id}/responses", json={"values": {}})

        assert len(fake.responses(survey.id)) == 1

    async def test_an_after_hang_answers_late_with_the_real_response(
        self, api: httpx.AsyncClient, fake: FakeQualtrics, survey: SurveyRef
    ) -> None:
        fake.inject_fault("hang", phase="after", seconds=0.2)

        started = time.monotonic()
        response = await api.get(f"/survey-definitions/{survey.id}")

        assert time.monotonic() - started >= 0.2
        assert result_of(response)["SurveyID"] == survey.id

    async def test_clear_faults(self, api: httpx.AsyncClient, fake: FakeQualtrics) -> None:
        fake.inject_fault("status", count=None)

        fake.clear_faults()

        assert (await api.get("/whoami")).status_code == 200

    def test_invalid_faults_are_refused(self, fake: FakeQualtrics) -> None:
        with pytest.raises(ValueError, match="regular expression"):
            fake.inject_fault("status", path_pattern="(")
        with pytest.raises(ValueError, match="less than or equal to 599"):
            fake.inject_fault("status", status=600)


class TestLatencyAndStats:
    async def test_latency_is_added_to_every_api_call(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.set_latency(0.2)

        started = time.monotonic()
        await asyncio.gather(api.get("/whoami"), api.get("/whoami"))
        elapsed = time.monotonic() - started

        # Both wait at once: simulated latency never serialises requests (that would be 0.4 s).
        assert 0.2 <= elapsed < 0.35

    async def test_requests_are_counted_and_logged(
        self, api: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        before = fake.stats.total

        await api.get("/whoami")
        await api.get("/nope")

        assert fake.stats.total == before + 2
        assert fake.stats.by_status[404] == 1
        last = fake.request_log[-1]
        assert (last.method, last.path, last.datacenter, last.status) == (
            "GET",
            "/API/v3/nope",
            "acme",
            404,
        )
