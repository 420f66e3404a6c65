"""Making the Qualtrics survey match a data field selection (design §4, last paragraph).

New questions are created, changed ones updated (PUT takes the whole definition), new
embedded fields declared in the flow, and the survey re-published when anything changed.
Nothing is ever deleted: a question dropped from the selection keeps its collected data.

Questions are found again by the field map, and failing that by their DataExportTag, so a
save that failed half-way (some questions created, the map not stored) heals on the next save
instead of creating duplicates.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.data_fields.targets import EmbeddedFieldTarget, QuestionTarget, Target
from service.models import QualtricsProject
from service.projects.service import VERSION_DESCRIPTION, declare_embedded_fields
from service.qualtrics import PublishedVersion, QualtricsClient


@dataclass
class SyncResult:
    field_map: dict[str, Any]
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    declared: bool = False
    version: PublishedVersion | None = None


def _differs(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return any(stored.get(key) != value for key, value in wanted.items())


async def sync_survey(
    client: QualtricsClient, project: QualtricsProject, targets: Sequence[Target]
) -> SyncResult:
    survey_id = project.survey_id
    definition = await client.get_survey_definition(survey_id)
    questions: Mapping[str, Any] = definition.get("Questions") or {}
    by_tag = {
        question.get("DataExportTag"): question_id
        for question_id, question in questions.items()
        if isinstance(question, Mapping)
    }
    result = SyncResult(field_map=dict(project.field_map))

    for target in targets:
        if not isinstance(target, QuestionTarget):
            continue
        mapped = (result.field_map.get(target.target_key) or {}).get("question_id")
        question_id = mapped if mapped in questions else by_tag.get(target.data_export_tag)
        if question_id is None:
            question_id = await client.create_question(
                survey_id, target.definition, block_id=project.default_block_id
            )
            result.created.append(question_id)
        elif _differs(questions[question_id], target.definition):
            await client.update_question(survey_id, question_id, target.definition)
            result.updated.append(question_id)
        result.field_map[target.target_key] = target.field_map_entry(question_id)

    embedded = [target for target in targets if isinstance(target, EmbeddedFieldTarget)]
    result.declared = await declare_embedded_fields(client, survey_id, embedded)
    for target in embedded:
        result.field_map[target.target_key] = target.field_map_entry()

    if result.created or result.updated or result.declared:
        result.version = await client.publish_version(survey_id, VERSION_DESCRIPTION)
    return result
