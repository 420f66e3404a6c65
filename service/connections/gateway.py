"""The process-wide way to Qualtrics: one HTTP pool, one token manager, clients per credentials.

The api and the worker each create one `QualtricsGateway` at startup (lifespan / worker
startup) and close it at shutdown. Tokens are cached in Redis when the process has one, so
every process shares them; the embedded default keeps them in memory.
"""

from typing import Annotated

import httpx
from fastapi import Depends, Request
from pydantic import SecretStr
from redis.asyncio import Redis

from service.kit.crypto import SecretBox
from service.models import QualtricsConnection
from service.qualtrics import (
    InMemoryTokenCache,
    QualtricsClient,
    QualtricsCredentials,
    RedisTokenCache,
    TokenCache,
    TokenManager,
    create_http_client,
)


class QualtricsGateway:
    def __init__(
        self,
        *,
        base_url_template: str,
        box: SecretBox,
        http: httpx.AsyncClient | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        self.base_url_template = base_url_template
        self._box = box
        self._http = http or create_http_client()
        self._tokens = TokenManager(token_cache or InMemoryTokenCache())

    @classmethod
    def for_settings(
        cls, *, base_url_template: str, box: SecretBox, redis: Redis | None
    ) -> "QualtricsGateway":
        # Cached tokens are bearer credentials: encrypted at rest in Redis like other secrets.
        cache: TokenCache = (
            RedisTokenCache(redis, cipher=box) if redis is not None else InMemoryTokenCache()
        )
        return cls(base_url_template=base_url_template, box=box, token_cache=cache)

    def encrypt(self, secret: str) -> str:
        return self._box.encrypt(secret)

    def client(self, credentials: QualtricsCredentials) -> QualtricsClient:
        return QualtricsClient(
            self._http, credentials, tokens=self._tokens, base_url_template=self.base_url_template
        )

    def client_for(self, connection: QualtricsConnection) -> QualtricsClient:
        """A client for stored credentials (decrypted only here, never returned)."""
        return self.client(
            QualtricsCredentials(
                client_id=connection.client_id,
                client_secret=SecretStr(self._box.decrypt(connection.client_secret_encrypted)),
                subdomain=connection.subdomain,
            )
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def get_gateway(request: Request) -> QualtricsGateway:
    gateway: QualtricsGateway = request.app.state.qualtrics
    return gateway


QualtricsGatewayDep = Annotated[QualtricsGateway, Depends(get_gateway)]
