"""The fake Qualtrics as a separate process on a real port, as a deployment would see it."""

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.main import create_app
from tests.conftest import (
    QUALTRICS_CLIENT_ID,
    QUALTRICS_CLIENT_SECRET,
    QUALTRICS_SUBDOMAIN,
    _empty_tables,
    make_settings,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def fake_qualtrics_url() -> Iterator[str]:
    port = free_port()
    account = f"{QUALTRICS_CLIENT_ID}:{QUALTRICS_CLIENT_SECRET}:{QUALTRICS_SUBDOMAIN}:acme"
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "service.testing.fake_qualtrics",
            "--port",
            str(port),
            "--account",
            account,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_fake/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the fake Qualtrics did not start")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
async def fake_control(fake_qualtrics_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The fake's control surface; its state is reset after each test (accounts re-added)."""
    async with httpx.AsyncClient(base_url=fake_qualtrics_url, timeout=10) as control:
        yield control
        await control.post("/_fake/reset")
        await control.post(
            "/_fake/accounts",
            json={
                "client_id": QUALTRICS_CLIENT_ID,
                "client_secret": QUALTRICS_CLIENT_SECRET,
                "datacenter": QUALTRICS_SUBDOMAIN,
                "brand_id": "acme",
            },
        )


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str) -> Settings:
    """The app points at the fake over HTTP, exactly as it would at Qualtrics."""
    return make_settings(database_url, qualtrics_base_url=fake_qualtrics_url + "/{subdomain}")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await _empty_tables(application)
