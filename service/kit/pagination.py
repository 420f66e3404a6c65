"""Keyset pagination over (created_at, id), newest first, with opaque cursors.

Keyset rather than offset: pages stay stable while rows are added and cost the same deep
into a long list.
"""

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, get_args

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from service.errors import BadRequest

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _page_examples(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Example pages built from the item model's own first example."""
    item_type = model.model_fields["items"].annotation
    item_model = get_args(item_type)[0] if get_args(item_type) else None
    extra = getattr(item_model, "model_config", {}).get("json_schema_extra") or {}
    item_examples = extra.get("examples", []) if isinstance(extra, dict) else []
    schema["examples"] = [
        {"items": item_examples[:1], "next_cursor": "MjAyNi0xMS0yNlQxNzowMDowMCswMDowMHw..."}
    ]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, newest first."""

    model_config = ConfigDict(json_schema_extra=_page_examples)

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class PageParams(BaseModel):
    limit: int
    cursor: str | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = base64.urlsafe_b64decode(padded).decode().split("|")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive cursor time")
        return parsed, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this API returned.") from None


async def paginate(
    session: AsyncSession,
    statement: Select[RowT],
    *,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
) -> tuple[Sequence[RowT], str | None]:
    """Run one page of `statement`; return its rows and the cursor of the next page."""
    if params.cursor is not None:
        after_created_at, after_id = decode_cursor(params.cursor)
        statement = statement.where(
            or_(
                created_at < after_created_at,
                and_(created_at == after_created_at, row_id < after_id),
            )
        )
    statement = statement.order_by(created_at.desc(), row_id.desc()).limit(params.limit + 1)
    rows: list[Any] = list((await session.scalars(statement)).all())
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        next_cursor = encode_cursor(getattr(last, created_at.key), getattr(last, row_id.key))
    return rows, next_cursor
