from fastapi import APIRouter, Response

from service.auth.dependencies import AdminPrincipal, CurrentPrincipal, SettingsDep
from service.connections.gateway import QualtricsGatewayDep
from service.data_fields.schemas import DataFieldSelection
from service.data_fields.service import data_field_service, saved_fields
from service.data_fields.views import DataFieldsView, Preview, PreviewRequest
from service.db import SessionDep
from service.errors import problem_responses
from service.integrations.dependencies import IfMatch, IntegrationId
from service.integrations.service import ETAG_KIND
from service.kit.etag import etag_for

router = APIRouter(prefix="/v1/integrations/{integration_id}", tags=["setup"])


@router.put(
    "/data-fields",
    response_model=DataFieldsView,
    summary="Step 3: choose the data fields",
    responses=problem_responses(400, 401, 403, 404, 409, 412, 422, 503),
)
async def put_data_fields(
    integration_id: IntegrationId,
    selection: DataFieldSelection,
    principal: AdminPrincipal,
    session: SessionDep,
    gateway: QualtricsGatewayDep,
    response: Response,
    if_match: IfMatch = None,
) -> DataFieldsView:
    """Save the ordered selection and update the survey to match (nothing is deleted there).

    Each invalid field is named in `errors` with the formats it allows.
    """
    integration, project = await data_field_service.save(
        session, gateway, principal, integration_id, selection, if_match=if_match
    )
    response.headers["ETag"] = etag_for(ETAG_KIND, integration.version)
    return DataFieldsView(fields=saved_fields(integration), synced_at=project.synced_at)


@router.get(
    "/data-fields",
    response_model=DataFieldsView,
    summary="Step 3: show the data fields",
    responses=problem_responses(401, 404, 422),
)
async def get_data_fields(
    integration_id: IntegrationId,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
) -> DataFieldsView:
    """The saved selection, in order (empty until step 3 is done)."""
    integration, project = await data_field_service.get(session, principal, integration_id)
    response.headers["ETag"] = etag_for(ETAG_KIND, integration.version)
    return DataFieldsView(
        fields=saved_fields(integration),
        synced_at=project.synced_at if project is not None else None,
    )


@router.post(
    "/preview",
    response_model=Preview,
    summary="Step 3: preview what Qualtrics would receive",
    responses=problem_responses(400, 401, 404, 422),
)
async def preview_response(
    integration_id: IntegrationId,
    request: PreviewRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    gateway: QualtricsGatewayDep,
    settings: SettingsDep,
) -> Preview:
    """Encode a sample interaction: each field in order with its target and value, and the
    exact request body. Send `fields` to preview a selection before saving it."""
    return await data_field_service.preview(
        session,
        gateway,
        principal,
        integration_id,
        request,
        creovai_app_url=settings.creovai_app_url,
    )
