import uuid
from typing import Annotated

from fastapi import Header, Path

IfMatch = Annotated[
    str | None,
    Header(
        max_length=200,
        description="The integration's ETag you last read; the write fails with 412 if it is "
        "stale.",
    ),
]
IntegrationId = Annotated[uuid.UUID, Path(description="The integration's id.")]
