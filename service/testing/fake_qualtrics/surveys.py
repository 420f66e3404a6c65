"""Stored surveys: definition, blocks, questions, flow, versions and responses.

Everything is kept as the JSON the API shows, and every read hands out deep copies, so nothing a
caller does to a returned object changes the stored survey.

[U] choices: a response's `values` as read back default `startDate`/`endDate` to the recorded
date, `status` to 0, `progress` to 100, `duration` to 0 and `finished` to 1 unless they were
sent; versions are listed newest first (as in the spec example); `DeletedDate` is a MySQL-style
`YYYY-MM-DD HH:MM:SS`; with an `Idempotency-Key` seen before, the original response id is
answered even if the body differs; idempotency keys are scoped to one survey.
"""

import copy
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from .accounts import Account
from .clock import iso
from .envelope import JsonObject
from .flow import embedded_data_items, new_root_flow, next_flow_id
from .spec import new_id

_SCORING: JsonObject = {
    "ScoringCategories": [],
    "ScoringCategoryGroups": [],
    "ScoringSummaryCategory": None,
    "ScoringSummaryAfterQuestions": 0,
    "ScoringSummaryAfterSurvey": 0,
    "DefaultScoringCategory": None,
    "AutoScoringCategory": None,
}


@dataclass
class StoredResponse:
    response_id: str
    submitted: JsonObject
    recorded_at: datetime
    idempotency_key: str | None

    def values(self) -> JsonObject:
        recorded = iso(self.recorded_at)
        defaults = {"startDate": recorded, "endDate": recorded, "status": 0, "progress": 100}
        return {
            **defaults,
            "duration": 0,
            "finished": 1,
            **copy.deepcopy(self.submitted),
            "recordedDate": recorded,
        }

    def as_result(self) -> JsonObject:
        values = self.values()
        return {
            "responseId": self.response_id,
            "values": values,
            "labels": {},
            "displayedFields": list(values),
            "displayedValues": {},
        }

    def as_json(self) -> JsonObject:
        """For inspection: the values exactly as the client sent them, `recordedDate` as
        Qualtrics formats it (whole seconds) and `recordedTimestamp` the same moment in Unix
        seconds to the microsecond (only here, on the control surface: a benchmark measuring
        latency needs more than whole seconds)."""
        return {
            "responseId": self.response_id,
            "values": copy.deepcopy(self.submitted),
            "recordedDate": iso(self.recorded_at),
            "recordedTimestamp": self.recorded_at.timestamp(),
            "idempotencyKey": self.idempotency_key,
        }


@dataclass
class SurveyVersion:
    survey_id: str
    version_id: str
    number: int
    description: str
    published: bool
    user_id: str
    created_at: datetime
    definition: JsonObject

    def metadata(self) -> JsonObject:
        created = iso(self.created_at)
        events = [{"date": created, "userID": self.user_id}] if self.published else []
        return {
            "description": self.description,
            "surveyID": self.survey_id,
            "versionID": self.version_id,
            "versionNumber": self.number,
            "userID": self.user_id,
            "creationDate": created,
            "published": self.published,
            "wasPublished": self.published,
            "publishEvents": events,
        }


@dataclass
class Survey:
    survey_id: str
    name: str
    language: str
    project_category: str
    brand_id: str
    owner_id: str
    created_at: datetime
    last_modified: datetime
    default_block_id: str
    response_set_id: str
    blocks: dict[str, JsonObject]
    flow: JsonObject
    status: str = "Inactive"
    description: str | None = None
    start_date: str | None = None
    expiration_date: str | None = None
    last_activated: datetime | None = None
    questions: dict[str, JsonObject] = field(default_factory=dict)
    next_question_number: int = 1
    versions: list[SurveyVersion] = field(default_factory=list)
    responses: dict[str, StoredResponse] = field(default_factory=dict)
    idempotency_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls, *, name: str, language: str, project_category: str, owner: Account, now: datetime
    ) -> "Survey":
        """A survey as `POST /survey-definitions` makes it: Inactive, with a default block, a
        Trash block and the root flow `FL_1` [S]."""
        default_block = {"Type": "Default", "Description": "Default Question Block"}
        trash_block = {"Type": "Trash", "Description": "Trash / Unused Questions"}
        blocks = {}
        for block in (default_block, trash_block):
            block_id = new_id("BL_")
            blocks[block_id] = {**block, "ID": block_id, "BlockElements": []}
        default_block_id = next(iter(blocks))
        return cls(
            survey_id=new_id("SV_"),
            name=name,
            language=language,
            project_category=project_category,
            brand_id=owner.brand_id,
            owner_id=owner.user_id,
            created_at=now,
            last_modified=now,
            default_block_id=default_block_id,
            response_set_id=new_id("RS_"),
            blocks=blocks,
            flow=new_root_flow(default_block_id),
        )

    @property
    def is_active(self) -> bool:
        return self.status == "Active"

    def set_active(self, active: bool, now: datetime) -> None:
        if active and not self.is_active:
            self.last_activated = now
        self.status = "Active" if active else "Inactive"
        self.last_modified = now

    def definition(self) -> JsonObject:
        """`GET /survey-definitions/{id}` [S/O: the spec example and a recorded response]."""
        return copy.deepcopy(
            {
                "SurveyID": self.survey_id,
                "SurveyName": self.name,
                "SurveyStatus": self.status,
                "LastModified": iso(self.last_modified),
                "BrandID": self.brand_id,
                "OwnerID": self.owner_id,
                "CreatorID": self.owner_id,
                "LastAccessed": None,
                "LastActivated": None if self.last_activated is None else iso(self.last_activated),
                "Questions": self.questions,
                "Blocks": self.blocks,
                "ResponseSets": {self.response_set_id: "Default Response Set"},
                "SurveyFlow": self.flow,
                "SurveyOptions": {
                    "SurveyLanguage": self.language,
                    "ActiveResponseSet": self.response_set_id,
                    "SurveyStartDate": self.start_date,
                    "SurveyExpirationDate": self.expiration_date,
                    "SurveyCreationDate": iso(self.created_at),
                },
                "Scoring": _SCORING,
                "ProjectInfo": {
                    "SurveyID": self.survey_id,
                    "ProjectCategory": self.project_category,
                    "ProjectType": None,
                    "CompositionType": None,
                    "ContentBundle": None,
                },
                "BrandBaseURL": f"https://{self.brand_id}.qualtrics.com",
                "QuestionCount": str(len(self.questions)),
            }
        )

    def metadata(self) -> JsonObject:
        """`GET /survey-definitions/{id}/metadata` [S]."""
        return {
            "SurveyID": self.survey_id,
            "SurveyName": self.name,
            "SurveyDescription": self.description,
            "SurveyOwnerID": self.owner_id,
            "SurveyBrandID": self.brand_id,
            "DivisionID": None,
            "SurveyLanguage": self.language,
            "SurveyActiveResponseSet": self.response_set_id,
            "SurveyStatus": self.status,
            "SurveyStartDate": self.start_date,
            "SurveyExpirationDate": self.expiration_date,
            "SurveyCreationDate": iso(self.created_at),
            "CreatorID": self.owner_id,
            "LastModified": iso(self.last_modified),
            "LastAccessed": None,
            "LastActivated": None if self.last_activated is None else iso(self.last_activated),
            "Deleted": None,
        }

    def summary(self) -> JsonObject:
        """An element of `GET /surveys` [O: sample app]."""
        return {
            "id": self.survey_id,
            "name": self.name,
            "ownerId": self.owner_id,
            "lastModified": iso(self.last_modified),
            "creationDate": iso(self.created_at),
            "isActive": self.is_active,
        }

    def legacy_view(self) -> JsonObject:
        """`GET /surveys/{id}`: the summary plus brand and availability dates [C]."""
        return {
            **self.summary(),
            "organizationId": self.brand_id,
            "expiration": {"startDate": self.start_date, "endDate": self.expiration_date},
        }

    def add_question(self, question: JsonObject, block_id: str, now: datetime) -> str:
        """Store a validated question in a block; QIDs count up and are never reused."""
        question_id = f"QID{self.next_question_number}"
        self.next_question_number += 1
        stored = copy.deepcopy(question)
        stored.setdefault("DataExportTag", f"Q{question_id[3:]}")
        self.questions[question_id] = {**stored, "QuestionID": question_id}
        self.blocks[block_id]["BlockElements"].append(
            {"Type": "Question", "QuestionID": question_id}
        )
        self.last_modified = now
        return question_id

    def replace_question(self, question_id: str, question: JsonObject, now: datetime) -> None:
        """PUT replaces the definition; an omitted DataExportTag keeps the current one."""
        stored = copy.deepcopy(question)
        stored.setdefault("DataExportTag", self.questions[question_id]["DataExportTag"])
        self.questions[question_id] = {**stored, "QuestionID": question_id}
        self.last_modified = now

    def delete_question(self, question_id: str, now: datetime) -> None:
        del self.questions[question_id]
        for block in self.blocks.values():
            block["BlockElements"] = [
                element
                for element in block["BlockElements"]
                if element.get("QuestionID") != question_id
            ]
        self.last_modified = now

    def add_block(self, description: str, now: datetime) -> tuple[str, str]:
        """A Standard block, appended to the root flow; returns (BlockID, FlowID)."""
        block_id = new_id("BL_")
        self.blocks[block_id] = {
            "Type": "Standard",
            "Description": description,
            "ID": block_id,
            "BlockElements": [],
        }
        flow_id = next_flow_id(self.flow)
        self.flow["Flow"].append({"Type": "Standard", "ID": block_id, "FlowID": flow_id})
        self.flow["Properties"]["Count"] = int(flow_id[3:])
        self.last_modified = now
        return block_id, flow_id

    def replace_flow(self, flow: JsonObject, now: datetime) -> None:
        self.flow = copy.deepcopy(flow)
        self.last_modified = now

    def embedded_fields(self) -> list[JsonObject]:
        return copy.deepcopy(embedded_data_items(self.flow))

    def embedded_field_names(self) -> set[str]:
        return {item["Field"] for item in embedded_data_items(self.flow)}

    def add_version(
        self, *, description: str, published: bool, user_id: str, now: datetime
    ) -> SurveyVersion:
        """A version snapshots the definition; `versionID` is a long numeric string [S]."""
        version = SurveyVersion(
            survey_id=self.survey_id,
            version_id=str(10**18 + secrets.randbelow(9 * 10**18)),
            number=len(self.versions) + 1,
            description=description,
            published=published,
            user_id=user_id,
            created_at=now,
            definition=self.definition(),
        )
        self.versions.append(version)
        return version

    def response_for_key(self, idempotency_key: str) -> StoredResponse | None:
        """The response an earlier request with this `Idempotency-Key` created, if any."""
        response_id = self.idempotency_keys.get(idempotency_key)
        return None if response_id is None else self.responses[response_id]

    def add_response(
        self, values: JsonObject, idempotency_key: str | None, now: datetime
    ) -> StoredResponse:
        response = StoredResponse(
            response_id=new_id("R_"),
            submitted=copy.deepcopy(values),
            recorded_at=now,
            idempotency_key=idempotency_key,
        )
        self.responses[response.response_id] = response
        if idempotency_key is not None:
            self.idempotency_keys[idempotency_key] = response.response_id
        return response

    def delete_response(self, response_id: str) -> None:
        response = self.responses.pop(response_id)
        if response.idempotency_key is not None:
            del self.idempotency_keys[response.idempotency_key]

    def clear_responses(self) -> int:
        """Forget every response (and its Idempotency-Key); how many there were."""
        count = len(self.responses)
        self.responses.clear()
        self.idempotency_keys.clear()
        return count
