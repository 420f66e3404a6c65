from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from service.auth.dependencies import AdminPrincipal, CurrentPrincipal
from service.catalog.schemas import Catalog, CatalogDocument
from service.catalog.service import CatalogSnapshot
from service.catalog.service import catalog as catalog_service
from service.db import SessionDep
from service.errors import problem_responses

router = APIRouter(prefix="/v1", tags=["catalog"])

_ETAG_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The catalogue; the `ETag` header names its version.",
        "headers": {
            "ETag": {
                "description": 'The catalogue version, e.g. `"catalog-3"`; send it as `If-Match`.',
                "schema": {"type": "string"},
            }
        },
    }
}


def _answer(snapshot: CatalogSnapshot, response: Response) -> Catalog:
    response.headers["ETag"] = snapshot.etag
    return Catalog.model_validate(
        {
            **snapshot.document.model_dump(),
            "version": snapshot.version,
            "updated_at": snapshot.updated_at,
        }
    )


@router.get(
    "/catalog",
    response_model=Catalog,
    summary="Get the catalogue",
    responses={**_ETAG_HEADER, **problem_responses(401)},
)
async def get_catalog(
    principal: CurrentPrincipal, session: SessionDep, response: Response
) -> Catalog:
    """The organization's categories, groups, scores, metadata fields and call-group types."""
    snapshot = await catalog_service.get(session, principal.organization_id)
    return _answer(snapshot, response)


@router.put(
    "/catalog",
    response_model=Catalog,
    summary="Replace the catalogue",
    responses={**_ETAG_HEADER, **problem_responses(400, 401, 403, 412, 413, 422)},
)
async def replace_catalog(
    document: CatalogDocument,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(description="The ETag you read; the write is refused (412) if it is stale."),
    ] = None,
) -> Catalog:
    """Replace the whole catalogue (admins only); an unchanged document keeps its version."""
    snapshot = await catalog_service.replace(
        session,
        organization_id=principal.organization_id,
        document=document,
        actor=principal,
        if_match=if_match,
    )
    return _answer(snapshot, response)
