"""Step 2: create the Qualtrics survey that receives the integration's responses."""

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.connections.gateway import QualtricsGateway
from service.connections.problems import call_problem
from service.data_fields.targets import RESERVED_EMBEDDED_FIELDS, EmbeddedFieldTarget
from service.errors import Conflict, NotFound
from service.integrations.service import ETAG_KIND, integration_service
from service.kit.etag import check_if_match
from service.models import Integration, QualtricsConnection, QualtricsProject
from service.models.base import utc_now
from service.projects.flow import with_embedded_fields
from service.projects.schemas import ProjectCreate
from service.qualtrics import QualtricsClient, QualtricsError

logger = logging.getLogger(__name__)

VERSION_DESCRIPTION = "Published by the Creovai → Qualtrics connector"


class StepIncomplete(Conflict):
    slug = "step-incomplete"


async def declare_embedded_fields(
    client: QualtricsClient, survey_id: str, targets: Sequence[EmbeddedFieldTarget]
) -> bool:
    """Declare the fields in the survey flow; whether the flow had to change."""
    flow = await client.get_flow(survey_id)
    updated, changed = with_embedded_fields(flow, [target.flow_item() for target in targets])
    if changed:
        await client.update_flow(survey_id, updated)
    return changed


class ProjectService:
    async def get(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> QualtricsProject:
        integration = await integration_service.get(session, principal, integration_id)
        project = await session.get(QualtricsProject, integration.id)
        if project is None:
            raise NotFound("This integration has no Qualtrics project yet (step 2).")
        return project

    async def create(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        principal: Principal,
        integration_id: uuid.UUID,
        data: ProjectCreate,
        *,
        if_match: str | None,
    ) -> tuple[QualtricsProject, Integration]:
        integration = await integration_service.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        existing = await session.get(QualtricsProject, integration.id)
        if existing is not None:
            raise Conflict(
                f"This integration already has its project: survey {existing.survey_id} "
                f"({existing.survey_name!r})."
            )
        connection = await session.get(QualtricsConnection, integration.id)
        if connection is None:
            raise StepIncomplete("Save the Qualtrics credentials first (step 1).")

        client = gateway.client_for(connection)
        try:
            project = await self._create_survey(client, integration, data.name)
        except QualtricsError as exc:
            raise call_problem(exc, host=client.base_url.host) from None
        session.add(project)
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=principal,
            action="project.created",
            integration_id=integration.id,
            details={"survey_id": project.survey_id, "survey_name": project.survey_name},
        )
        integration_service.touch(integration)
        await session.flush()
        return project, integration

    async def _create_survey(
        self, client: QualtricsClient, integration: Integration, name: str
    ) -> QualtricsProject:
        created = await client.create_survey(name)
        try:
            await declare_embedded_fields(client, created.survey_id, RESERVED_EMBEDDED_FIELDS)
            await client.activate_survey(created.survey_id)
            version = await client.publish_version(created.survey_id, VERSION_DESCRIPTION)
        except QualtricsError:
            # Do not leave a half-built survey behind in the customer's Qualtrics account.
            try:
                await client.delete_survey(created.survey_id)
            except QualtricsError:
                logger.warning("could not delete half-built survey %s", created.survey_id)
            raise
        return QualtricsProject(
            integration_id=integration.id,
            survey_id=created.survey_id,
            survey_name=name,
            default_block_id=created.default_block_id,
            field_map={
                target.target_key: target.field_map_entry() for target in RESERVED_EMBEDDED_FIELDS
            },
            published_version_id=version.version_id,
            published_version_number=version.version_number,
            synced_at=utc_now(),
        )


project_service = ProjectService()
