"""Fixtures for the fake Qualtrics: a fresh app per test, an account and an API client."""

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from service.testing.fake_qualtrics import (
    Account,
    FakeQualtrics,
    create_fake_qualtrics_app,
)

from .helpers import (
    BRAND_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    SUBDOMAIN,
    SurveyFactory,
    SurveyRef,
    fetch_token,
    result_of,
)


@pytest.fixture
def fake_app() -> Starlette:
    return create_fake_qualtrics_app()


@pytest.fixture
def fake(fake_app: Starlette) -> FakeQualtrics:
    state: FakeQualtrics = fake_app.state.fake
    return state


@pytest.fixture
async def http(fake_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client at the server root, no credentials."""
    transport = httpx.ASGITransport(app=fake_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def account(fake: FakeQualtrics) -> Account:
    return fake.register_account(
        CLIENT_ID, CLIENT_SECRET, datacenter=SUBDOMAIN, brand_id=BRAND_ID, first_name="Ada"
    )


@pytest.fixture
async def token(http: httpx.AsyncClient, account: Account) -> str:
    response = await fetch_token(http)
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


@pytest.fixture
async def api(fake_app: Starlette, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client at `/{subdomain}/API/v3/` with a valid bearer token."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake_app),
        base_url=f"http://testserver/{SUBDOMAIN}/API/v3",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


@pytest.fixture
def make_survey(api: httpx.AsyncClient) -> SurveyFactory:
    async def create(name: str = "Connector test") -> SurveyRef:
        response = await api.post(
            "/survey-definitions",
            json={"SurveyName": name, "Language": "EN", "ProjectCategory": "CORE"},
        )
        result = result_of(response)
        return SurveyRef(id=result["SurveyID"], default_block_id=result["DefaultBlockID"])

    return create


@pytest.fixture
async def survey(make_survey: SurveyFactory) -> SurveyRef:
    return await make_survey()
