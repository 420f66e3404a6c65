from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import LoginThrottle
from service.models.base import utc_now
from tests.conftest import TEST_PASSWORD, Account, AccountFactory
from tests.helpers import assert_problem


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": email, "password": password})


class TestCreateToken:
    async def test_valid_credentials_issue_a_working_token(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        response = await sign_in(client, admin.user.email, TEST_PASSWORD)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200
        assert me.json()["email"] == admin.user.email
        assert "password" not in me.text
        assert "argon2" not in me.text

    async def test_email_is_case_insensitive(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        response = await sign_in(client, admin.user.email.upper(), TEST_PASSWORD)
        assert response.status_code == 200

    @pytest.mark.parametrize("which", ["password", "email"])
    async def test_wrong_credentials_answer_401_without_saying_which(
        self, client: httpx.AsyncClient, admin: Account, which: str
    ) -> None:
        email = admin.user.email if which == "password" else "nobody@example.com"
        password = "wrong password!" if which == "password" else TEST_PASSWORD
        body = assert_problem(await sign_in(client, email, password), 401)
        assert body["detail"] == "Incorrect email or password."

    async def test_missing_fields_answer_422(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.post("/v1/auth/token", data={}), 422)
        pointers = {error["pointer"] for error in body["errors"]}  # type: ignore[union-attr]
        assert pointers == {"/body/username", "/body/password"}

    async def test_repeated_failures_lock_the_account_for_a_while(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        for _ in range(5):
            assert_problem(await sign_in(client, admin.user.email, "wrong password!"), 401)
        # Even the right password is refused while the lock lasts.
        locked = await sign_in(client, admin.user.email, TEST_PASSWORD)
        assert_problem(locked, 429)
        assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60

        # Once the lock has passed, the right password works and clears the counter.
        async with sessionmaker.begin() as session:
            throttle = (await session.scalars(select(LoginThrottle))).one()
            throttle.locked_until = utc_now() - timedelta(seconds=1)
        assert (await sign_in(client, admin.user.email, TEST_PASSWORD)).status_code == 200
        async with sessionmaker() as session:
            assert (await session.scalars(select(LoginThrottle))).all() == []


class TestMe:
    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/me")
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_garbage_token(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/me", headers={"Authorization": "Bearer not-a-jwt"})
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    async def test_token_of_a_deleted_user_is_refused(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async with sessionmaker.begin() as session:
            await session.delete(await session.merge(admin.user))
        assert_problem(await client.get("/v1/me", headers=admin.headers), 401)

    async def test_viewer_sees_own_role(
        self, client: httpx.AsyncClient, viewer: Account, make_account: AccountFactory
    ) -> None:
        response = await client.get("/v1/me", headers=viewer.headers)
        assert response.status_code == 200
        assert response.json()["role"] == "viewer"
