"""Which of the four setup steps an integration has completed (design §6)."""

import enum
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Integration, QualtricsConnection, QualtricsProject, Trigger


class Step(enum.StrEnum):
    CREDENTIALS = "credentials"
    PROJECT = "project"
    DATA_FIELDS = "data_fields"
    TRIGGERS = "triggers"


@dataclass(frozen=True, slots=True)
class StepState:
    step: Step
    complete: bool
    reason: str | None = None


async def step_states(session: AsyncSession, integration: Integration) -> list[StepState]:
    connection = await session.get(QualtricsConnection, integration.id)
    project = await session.get(QualtricsProject, integration.id)
    enabled_triggers = await session.scalar(
        select(func.count())
        .select_from(Trigger)
        .where(Trigger.integration_id == integration.id, Trigger.enabled.is_(True))
    )
    return [
        StepState(Step.CREDENTIALS, True)
        if connection is not None
        else StepState(Step.CREDENTIALS, False, "No Qualtrics credentials are saved."),
        StepState(Step.PROJECT, True)
        if project is not None
        else StepState(Step.PROJECT, False, "No Qualtrics project has been created."),
        StepState(Step.DATA_FIELDS, True)
        if integration.data_fields
        else StepState(Step.DATA_FIELDS, False, "No data fields have been chosen."),
        StepState(Step.TRIGGERS, True)
        if enabled_triggers
        else StepState(Step.TRIGGERS, False, "No enabled trigger: with none, nothing is sent."),
    ]
