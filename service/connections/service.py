"""Step 1: verify Qualtrics credentials, store them encrypted, and keep health in step."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.connections.gateway import QualtricsGateway
from service.connections.problems import call_problem, verification_problem
from service.connections.schemas import QualtricsConnectionIn
from service.errors import FieldError, NotFound, UnprocessableEntity
from service.integrations.service import ETAG_KIND, integration_service
from service.kit.etag import check_if_match
from service.models import Integration, QualtricsConnection, QualtricsProject
from service.models.base import utc_now
from service.qualtrics import (
    InvalidSubdomain,
    QualtricsAuthRejected,
    QualtricsClient,
    QualtricsCredentials,
    QualtricsError,
    QualtricsForbidden,
    QualtricsNotFound,
)


def _credentials(data: QualtricsConnectionIn) -> QualtricsCredentials:
    try:
        return QualtricsCredentials(
            client_id=data.client_id, client_secret=data.client_secret, subdomain=data.subdomain
        )
    except InvalidSubdomain as exc:
        pointer, detail = "/body/subdomain", str(exc)
    except ValueError as exc:
        detail = str(exc)
        pointer = "/body/client_secret" if "secret" in detail else "/body/client_id"
    raise UnprocessableEntity(detail, errors=[FieldError(pointer=pointer, detail=detail)])


async def survey_reachable(client: QualtricsClient, survey_id: str) -> bool:
    """Whether these credentials can still see the survey; transient trouble is raised."""
    try:
        await client.get_survey_definition(survey_id)
    except (QualtricsNotFound, QualtricsForbidden, QualtricsAuthRejected):
        return False
    except QualtricsError as exc:
        raise call_problem(exc, host=client.base_url.host) from None
    return True


class ConnectionService:
    async def get(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> QualtricsConnection:
        integration = await integration_service.get(session, principal, integration_id)
        connection = await session.get(QualtricsConnection, integration.id)
        if connection is None:
            raise NotFound("This integration has no Qualtrics connection yet (step 1).")
        return connection

    async def save(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        principal: Principal,
        integration_id: uuid.UUID,
        data: QualtricsConnectionIn,
        *,
        if_match: str | None,
    ) -> tuple[QualtricsConnection, Integration]:
        integration = await integration_service.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        credentials = _credentials(data)
        client = gateway.client(credentials)
        try:
            who = await client.whoami()
        except QualtricsError as exc:
            raise verification_problem(
                exc, subdomain=credentials.subdomain, host=client.base_url.host
            ) from None

        secret = data.client_secret.get_secret_value()
        connection = await session.get(QualtricsConnection, integration.id)
        if connection is None:
            connection = QualtricsConnection(integration_id=integration.id)
            session.add(connection)
        connection.client_id = credentials.client_id
        connection.client_secret_encrypted = gateway.encrypt(secret)
        connection.client_secret_last4 = secret[-4:]
        connection.subdomain = credentials.subdomain
        connection.verified_at = utc_now()
        connection.brand_id = who.brand_id
        connection.qualtrics_user_id = who.user_id
        connection.qualtrics_user_name = who.user_name
        connection.datacenter = who.datacenter
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=principal,
            action="qualtrics_connection.saved",
            integration_id=integration.id,
            details={"client_id": credentials.client_id, "subdomain": credentials.subdomain},
        )

        # Design §6: new credentials must still reach the survey, or the integration stops.
        project = await session.get(QualtricsProject, integration.id)
        if project is not None and not await survey_reachable(client, project.survey_id):
            integration_service.invalidate(
                session,
                integration,
                reason=f"The survey {project.survey_id} is not reachable with the new "
                "Qualtrics credentials.",
                actor=principal,
            )
        else:
            integration_service.mark_healthy(session, integration, actor=principal)
            integration_service.touch(integration)
        await session.flush()
        return connection, integration

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        integration = await integration_service.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        connection = await session.get(QualtricsConnection, integration.id)
        if connection is None:
            raise NotFound("This integration has no Qualtrics connection.")
        await session.delete(connection)
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=principal,
            action="qualtrics_connection.deleted",
            integration_id=integration.id,
            details={"client_id": connection.client_id, "subdomain": connection.subdomain},
        )
        integration_service.invalidate(
            session, integration, reason="The Qualtrics credentials were deleted.", actor=principal
        )
        await session.flush()


connection_service = ConnectionService()
