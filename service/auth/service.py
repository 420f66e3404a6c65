"""Sign-in: password check with a per-account brute-force limit shared through the database."""

import hashlib
import math

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.concurrency import run_in_threadpool

from service.auth.passwords import verify_password
from service.config import Settings
from service.errors import TooManyRequests, Unauthorized
from service.models import LoginThrottle, User
from service.models.base import utc_now


def _throttle_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _too_many(retry_after_seconds: float) -> TooManyRequests:
    seconds = max(1, math.ceil(retry_after_seconds))
    return TooManyRequests(
        f"Too many failed sign-ins for this account; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
    )


class AuthService:
    async def authenticate(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        email: str,
        password: str,
    ) -> User:
        key = _throttle_key(email)
        throttle = await session.get(LoginThrottle, key)
        now = utc_now()
        if (
            throttle is not None
            and throttle.locked_until is not None
            and throttle.locked_until > now
        ):
            raise _too_many((throttle.locked_until - now).total_seconds())

        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        # argon2 is deliberately slow (tens of ms of CPU): keep it off the event loop.
        valid = await run_in_threadpool(
            verify_password, user.password_hash if user else None, password
        )
        if not valid or user is None:
            await self._record_failure(sessionmaker, settings, key)
            raise Unauthorized("Incorrect email or password.")

        if throttle is not None:
            await session.delete(throttle)
        user.last_login_at = now
        return user

    async def _record_failure(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, key: str
    ) -> None:
        # Its own transaction, on purpose: the request itself fails (and rolls back), but the
        # failure must still count, or the limit would never bite.
        for _ in range(2):
            try:
                async with sessionmaker.begin() as session:
                    await self._count_failure(session, settings, key)
                return
            except IntegrityError:
                continue  # a concurrent first failure inserted the row; count on top of it

    async def _count_failure(self, session: AsyncSession, settings: Settings, key: str) -> None:
        now = utc_now()
        throttle = await session.scalar(
            select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
        )
        if throttle is None:
            throttle = LoginThrottle(key=key, failures=0, window_started_at=now)
            session.add(throttle)
        elif now - throttle.window_started_at > settings.login_lockout:
            throttle.failures, throttle.window_started_at = 0, now
        throttle.failures += 1
        if throttle.failures >= settings.login_max_failures:
            throttle.locked_until = now + settings.login_lockout


auth = AuthService()
