"""Step 3: save the data field selection (syncing the survey), show it, and preview it."""

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.catalog.schemas import CatalogDocument
from service.catalog.service import catalog as catalog_service
from service.connections.gateway import QualtricsGateway
from service.connections.problems import call_problem
from service.data_fields.encoding import compile_plan
from service.data_fields.schemas import DataField, DataFieldSelection
from service.data_fields.sync import sync_survey
from service.data_fields.targets import QuestionTarget, build_targets
from service.data_fields.validation import validate_selection
from service.data_fields.views import Preview, PreviewRequest, QualtricsRequest
from service.errors import UnprocessableEntity
from service.integrations.service import ETAG_KIND, integration_service
from service.kit.etag import check_if_match
from service.models import Integration, QualtricsConnection, QualtricsProject
from service.models.base import utc_now
from service.projects.service import StepIncomplete
from service.qualtrics import QualtricsError, build_base_url

_QUESTION_NUMBER = re.compile(r"QID([0-9]+)")
UNKNOWN_SURVEY = "{surveyId}"


def saved_fields(integration: Integration) -> list[DataField]:
    return [DataField.model_validate(item) for item in integration.data_fields or []]


def _checked(fields: Sequence[DataField], catalog: CatalogDocument, prefix: str) -> None:
    errors = validate_selection(fields, catalog, pointer_prefix=prefix)
    if errors:
        raise UnprocessableEntity(
            f"The data field selection has {len(errors)} problem(s).", errors=errors
        )


def _provisional_map(
    fields: Sequence[DataField], catalog: CatalogDocument, field_map: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The field map saving would produce: new questions get the next free question ids."""
    numbers = [
        int(match.group(1))
        for entry in field_map.values()
        if (match := _QUESTION_NUMBER.fullmatch(str(entry.get("question_id", ""))))
    ]
    next_number = max(numbers, default=0) + 1
    result, provisional = dict(field_map), []
    for target in build_targets(fields, catalog, field_map=field_map):
        if target.target_key in result:
            continue
        if isinstance(target, QuestionTarget):
            result[target.target_key] = target.field_map_entry(f"QID{next_number}")
            provisional.append(target.target_key)
            next_number += 1
        else:
            result[target.target_key] = target.field_map_entry()
    return result, provisional


class DataFieldService:
    async def get(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> tuple[Integration, QualtricsProject | None]:
        integration = await integration_service.get(session, principal, integration_id)
        return integration, await session.get(QualtricsProject, integration.id)

    async def save(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        principal: Principal,
        integration_id: uuid.UUID,
        selection: DataFieldSelection,
        *,
        if_match: str | None,
    ) -> tuple[Integration, QualtricsProject]:
        integration = await integration_service.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        project = await session.get(QualtricsProject, integration.id)
        connection = await session.get(QualtricsConnection, integration.id)
        if connection is None:
            raise StepIncomplete("Save the Qualtrics credentials first (step 1).")
        if project is None:
            raise StepIncomplete("Create the Qualtrics project first (step 2).")
        catalog = await catalog_service.get_document(session, integration.organization_id)
        _checked(selection.fields, catalog, "/body/fields")

        targets = build_targets(selection.fields, catalog, field_map=project.field_map)
        client = gateway.client_for(connection)
        try:
            result = await sync_survey(client, project, targets)
        except QualtricsError as exc:
            raise call_problem(exc, host=client.base_url.host) from None

        project.field_map = result.field_map
        project.synced_at = utc_now()
        if result.version is not None:
            project.published_version_id = result.version.version_id
            project.published_version_number = result.version.version_number
        integration.data_fields = [field.model_dump(mode="json") for field in selection.fields]
        integration_service.touch(integration)
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=principal,
            action="data_fields.saved",
            integration_id=integration.id,
            details={
                "fields": len(selection.fields),
                "questions_created": result.created,
                "questions_updated": result.updated,
                "embedded_fields_declared": result.declared,
            },
        )
        await session.flush()
        return integration, project

    async def preview(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        principal: Principal,
        integration_id: uuid.UUID,
        request: PreviewRequest,
        *,
        creovai_app_url: str,
    ) -> Preview:
        integration, project = await self.get(session, principal, integration_id)
        catalog = await catalog_service.get_document(session, integration.organization_id)
        fields = request.fields if request.fields is not None else saved_fields(integration)
        if not fields:
            raise UnprocessableEntity(
                "There is nothing to preview: send `fields`, or save a selection first.",
                errors=[],
            )
        _checked(fields, catalog, "/body/fields")
        field_map, provisional = _provisional_map(
            fields, catalog, project.field_map if project is not None else {}
        )
        plan = compile_plan(fields, field_map, catalog)
        encoded = plan.encode(
            request.interaction,
            trigger_name=request.trigger_name,
            creovai_app_url=creovai_app_url,
        )
        return Preview(
            fields=encoded.fields,
            provisional=provisional,
            request=QualtricsRequest(
                method="POST",
                url=await self._responses_url(session, gateway, integration, project),
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": "<the delivery id>",
                },
                body=encoded.body(),
            ),
        )

    async def _responses_url(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        integration: Integration,
        project: QualtricsProject | None,
    ) -> str:
        connection = await session.get(QualtricsConnection, integration.id)
        survey = project.survey_id if project is not None else UNKNOWN_SURVEY
        if connection is None:
            return f"{{base}}/API/v3/surveys/{survey}/responses"
        base = build_base_url(connection.subdomain, gateway.base_url_template)
        return f"{base.url}/API/v3/surveys/{survey}/responses"


data_field_service = DataFieldService()
