"""Typed results of Qualtrics calls, parsed from the `result` of the envelope.

Qualtrics answers are untrusted input (OWASP API10): ids we will later put into URLs or store
are checked against their documented patterns here, so a malformed id fails loudly as a
protocol error instead of surfacing later as a confusing 400 or a stored bad value.
Unknown fields are ignored, because Qualtrics adds fields without notice.
"""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

SurveyId = Annotated[str, StringConstraints(pattern=r"^SV_[a-zA-Z0-9]{11,15}$")]
BlockId = Annotated[str, StringConstraints(pattern=r"^BL_[a-zA-Z0-9]{11,15}$")]
QuestionId = Annotated[str, StringConstraints(pattern=r"^QID[0-9]+$")]
ResponseId = Annotated[str, StringConstraints(pattern=r"^R_[a-zA-Z0-9]{1,64}$")]
VersionId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Meta(_Result):
    """The `meta` of every envelope; `notice` says when Qualtrics proxied the call."""

    request_id: str | None = Field(default=None, alias="requestId")
    http_status: str | None = Field(default=None, alias="httpStatus")
    notice: str | None = None


class Envelope(_Result):
    """`{"result": ..., "meta": {...}}`; PUT and DELETE answer with `meta` alone."""

    result: Any = None
    meta: Meta = Field(default_factory=Meta)


class WhoAmI(_Result):
    """The user behind the token; `datacenter` is Qualtrics' legacy name for it (e.g. `az1`)."""

    model_config = ConfigDict(alias_generator=to_camel)

    brand_id: str
    user_id: str
    user_name: str | None = None
    account_type: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    datacenter: str | None = None


class CreatedSurvey(_Result):
    survey_id: SurveyId = Field(alias="SurveyID")
    default_block_id: BlockId = Field(alias="DefaultBlockID")


class CreatedQuestion(_Result):
    question_id: QuestionId = Field(alias="QuestionID")


class PublishedVersion(_Result):
    """`versionID` is a numeric string (it overflows JavaScript numbers); the number counts up."""

    version_id: VersionId = Field(alias="versionID")
    version_number: int = Field(alias="versionNumber", ge=0)


class PublishedVersionResult(_Result):
    metadata: PublishedVersion


class CreatedResponse(_Result):
    response_id: ResponseId = Field(alias="responseId")
