"""The organizations' webhook signing secrets, decrypted once and kept briefly in memory.

Reading and decrypting an organization's secrets on every webhook cost two queries and a
Fernet decryption per request: the largest part of intake after the insert itself. They change
rarely (a rotation adds one, an expiry drops one), so each process keeps them for `ttl`
seconds, with two rules that keep the cache invisible to the sender:

- Expiry is exact: each secret carries its `expires_at` and is checked at every use, so a
  rotated-out secret stops verifying on the dot, cached or not.
- A signature that none of the cached secrets verifies is checked once more against a fresh
  read (at most once per `refresh_after` seconds per organization), so a secret created by a
  rotation on another process verifies at once, not `ttl` seconds later.

Unknown organizations are not cached: they answer 401 like a bad signature, and a later
organization of that id must not be refused because of an earlier miss.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service.kit.crypto import SecretBox
from service.models import Organization, WebhookSecret
from service.models.base import utc_now


@dataclass(frozen=True, slots=True)
class SigningSecret:
    verifier: Webhook  # holds the decoded key: built once, not per request
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class _Entry:
    secrets: tuple[SigningSecret, ...]
    read_at: float


class SigningSecretCache:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        ttl: float = 30.0,
        refresh_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._ttl = ttl
        self._refresh_after = refresh_after
        self._clock = clock
        self._entries: dict[uuid.UUID, _Entry] = {}

    async def get(self, organization_id: uuid.UUID) -> list[Webhook] | None:
        """The active verifiers, newest first; None for an unknown organization."""
        entry = self._entries.get(organization_id)
        if entry is None or self._clock() - entry.read_at > self._ttl:
            entry = await self._read(organization_id)
            if entry is None:
                return None
        return _active(entry)

    async def refreshed(self, organization_id: uuid.UUID) -> list[Webhook] | None:
        """After a failed verification: a fresh read, unless the cached one is that fresh."""
        entry = self._entries.get(organization_id)
        if entry is not None and self._clock() - entry.read_at <= self._refresh_after:
            return None  # nothing new to try
        entry = await self._read(organization_id)
        return None if entry is None else _active(entry)

    def forget(self, organization_id: uuid.UUID) -> None:
        """Drop an organization (its secrets changed in this process)."""
        self._entries.pop(organization_id, None)

    async def _read(self, organization_id: uuid.UUID) -> _Entry | None:
        read_at = self._clock()
        async with self._sessionmaker() as session:
            if await session.get(Organization, organization_id) is None:
                self._entries.pop(organization_id, None)
                return None
            rows = await session.scalars(
                select(WebhookSecret)
                .where(WebhookSecret.organization_id == organization_id)
                .order_by(WebhookSecret.created_at.desc())
            )
            secrets = tuple(
                SigningSecret(Webhook(self._box.decrypt(row.secret_encrypted)), row.expires_at)
                for row in rows
            )
        entry = _Entry(secrets, read_at)
        self._entries[organization_id] = entry
        return entry


def _active(entry: _Entry) -> list[Webhook]:
    now = utc_now()
    return [secret.verifier for secret in entry.secrets if secret.active(now)]
