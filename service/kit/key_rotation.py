"""`service rotate-keys`: re-encrypt every stored secret under the first configured key."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from service.kit.crypto import SecretBox
from service.models import QualtricsConnection, WebhookSecret

# Every column that holds a Fernet token. A new encrypted column must be added here, or
# dropping an old key would make its values unreadable.
ENCRYPTED_COLUMNS: list[InstrumentedAttribute[str]] = [
    WebhookSecret.secret_encrypted,
    QualtricsConnection.client_secret_encrypted,
]


async def rotate_encrypted_columns(session: AsyncSession, box: SecretBox) -> int:
    """Re-encrypt every value under the primary key; returns how many values were rewritten."""
    rewritten = 0
    for column in ENCRYPTED_COLUMNS:
        model = column.class_
        # One secret per organization or integration: small enough to load at once.
        for row in (await session.scalars(select(model))).all():
            setattr(row, column.key, box.rotate(getattr(row, column.key)))
            rewritten += 1
    await session.flush()
    return rewritten
