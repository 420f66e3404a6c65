"""The fake over real HTTP: uvicorn in this process, and the command line in a subprocess."""

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.testing.fake_qualtrics import FakeQualtrics, create_fake_qualtrics_app
from tests.conftest import free_port

from .helpers import result_of

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


async def eventually(condition: Callable[[], bool], within_seconds: float) -> None:
    """Poll `condition`: neither uvicorn's start nor the request log offers anything to await."""
    deadline = time.monotonic() + within_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class LiveServer:
    url: str
    fake: FakeQualtrics


@pytest.fixture
async def live_server() -> AsyncIterator[LiveServer]:
    app = create_fake_qualtrics_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws="none", log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, STARTUP_TIMEOUT)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield LiveServer(url=f"http://127.0.0.1:{port}", fake=app.state.fake)
    server.should_exit = True
    await task


async def bearer(client: httpx.AsyncClient, subdomain: str = "acme") -> dict[str, str]:
    response = await client.post(
        f"/{subdomain}/oauth2/token",
        auth=("cid", "secret"),
        data={"grant_type": "client_credentials"},
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


class TestLiveServer:
    async def test_a_real_round_trip(self, live_server: LiveServer) -> None:
        async with httpx.AsyncClient(base_url=live_server.url) as client:
            await client.post(
                "/_fake/accounts",
                json={
                    "client_id": "cid",
                    "client_secret": "secret",
                    "datacenter": "acme",
                    "brand_id": "acme",
                },
            )
            headers = await bearer(client)
            created = await client.post(
                "/acme/API/v3/survey-definitions",
                headers=headers,
                json={"SurveyName": "live", "Language": "EN", "ProjectCategory": "CORE"},
            )
            survey_id = result_of(created)["SurveyID"]
            posted = await client.post(
                f"/acme/API/v3/surveys/{survey_id}/responses",
                headers={**headers, "Idempotency-Key": "live-1"},
                json={"values": {"finished": 1}},
            )
            stored = (await client.get(f"/_fake/surveys/{survey_id}/responses")).json()

        assert result_of(posted)["responseId"] == stored[0]["responseId"]
        assert live_server.fake.stats.by_status[200] == 3

    async def test_a_reset_fault_breaks_the_connection(self, live_server: LiveServer) -> None:
        live_server.fake.register_account("cid", "secret", datacenter="acme", brand_id="acme")
        live_server.fake.inject_fault("reset", path_pattern="/whoami$")
        async with httpx.AsyncClient(base_url=live_server.url) as client:
            headers = await bearer(client)

            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/acme/API/v3/whoami", headers=headers)
            assert (await client.get("/acme/API/v3/whoami", headers=headers)).status_code == 200

    async def test_an_endless_body_stops_when_the_client_leaves(
        self, live_server: LiveServer
    ) -> None:
        live_server.fake.inject_fault("body", body_bytes=None)
        received = 0
        async with httpx.AsyncClient(base_url=live_server.url) as client:
            async with client.stream("GET", "/acme/API/v3/whoami") as response:
                assert "content-length" not in response.headers
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > 4 * 1024 * 1024:
                        break
            # Recorded only once the server's body loop noticed the disconnect and ended.
            await eventually(lambda: bool(live_server.fake.request_log), 5)

            assert (await client.get("/_fake/health")).status_code == 200
        assert live_server.fake.request_log[-1].fault == "body"


async def test_the_command_line_serves_preregistered_accounts() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.testing.fake_qualtrics",
        "--port",
        str(port),
        "--account",
        "cid:secret:acme:brand-1",
        "--config",
        '{"latency_seconds": 0.01}',
        cwd=REPO_ROOT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                while True:
                    try:
                        await client.get("/_fake/health")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            whoami = await client.get("/acme/API/v3/whoami", headers=await bearer(client))
            config = (await client.get("/_fake/config")).json()

        assert result_of(whoami)["brandId"] == "brand-1"
        assert config["latency_seconds"] == 0.01
    finally:
        process.terminate()
        await process.wait()
