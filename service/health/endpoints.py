from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.db import head_revision, schema_revision
from service.errors import ServiceUnavailable, problem_responses

router = APIRouter(tags=["health"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "database": "ok", "schema_revision": "0001"}]
        }
    )

    status: str
    database: str
    schema_revision: str | None


@router.get("/healthz", response_model=Health, summary="Liveness")
async def get_health() -> Health:
    """The process is up and serving requests."""
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Readiness, summary="Readiness", responses=problem_responses(503)
)
async def get_service_readiness(request: Request) -> Readiness:
    """The database is reachable and its schema is the one this release needs."""
    engine = request.app.state.engine
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        current = await schema_revision(engine)
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("The database is unreachable.") from None
    head = head_revision()
    if current != head:
        raise ServiceUnavailable(
            f"The database schema is at {current or 'no revision'}; this release needs {head}."
        )
    return Readiness(status="ready", database="ok", schema_revision=current)
