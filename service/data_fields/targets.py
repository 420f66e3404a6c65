"""How each data field looks in Qualtrics: a survey question, or an embedded-data field.

Identity (`target_key`), the key of the project's field map:

- A **question** is identified by what it measures, `"{source}:{key}:{format}:question"`, e.g.
  `score:TEI:range:question`. Its label is only its text: relabelling updates the question in
  place (same QID, same collected data).
- An **embedded-data field** is identified by its name, `"embedded_data:{name}"`. In Qualtrics the
  name *is* the field: responses, exports and dashboards refer to it by name, so a new label means
  a new field (the old one stays, with its data; nothing is ever deleted from Qualtrics).

Default names, when a field has no label:

- questions get a readable text, e.g. `TEI (Creovai Effort Index) on a 0-10 scale`,
  `Frustration occurred?`;
- embedded fields get a short, stable name: the details have fixed names (`interaction_date`,
  `duration_seconds`, `customer_email`, ...); any other field is named after its key, suffixed
  with its format when it is not the source's main one (`TEI` for `range`, `TEI_value`;
  `Effort` for `boolean`, `Effort_multi_value_text_set`), so picking two formats of one thing
  needs no labels.

Choice ids of multiple-choice questions are strings `"1"`, `"2"`, ... as in Qualtrics
definitions, with `RecodeValues` equal to the ids, so a response answers with the id as a number.
They are **stable**: pass the project's current field map to `build_targets` and every label
keeps its id, new labels get new ids after the highest one, and labels that left the catalogue
keep their choice (deleting or renumbering a choice would re-label the data already collected).
"""

import dataclasses
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.catalog.schemas import CatalogDocument
from service.data_fields.schemas import (
    MAX_LABEL_LENGTH,
    CustomerDetailKey,
    DataField,
    Format,
    InteractionDetailKey,
    Placement,
    Source,
)

MAX_EXPORT_TAG_LENGTH = 100
MAX_FIELD_NAME_LENGTH = 100

INTERACTION_ID_FIELD = "creovai_interaction_id"
TRIGGER_FIELD = "creovai_trigger"
# Every name starting with this prefix (any case) is the connector's own.
RESERVED_PREFIX = "creovai_"


class VariableType(StrEnum):
    """Embedded-data field types (qualtrics-api.md §4.3)."""

    STRING = "String"  # "Text" in the UI: free text, unique values
    NOMINAL = "Nominal"  # "Text set"
    MULTI_VALUE_NOMINAL = "MultiValueNominal"  # "Multi-value text set", split on commas
    SCALE = "Scale"  # "Number"
    DATE = "Date"


_I = InteractionDetailKey
_C = CustomerDetailKey

_DETAIL_QUESTION_TEXTS: Mapping[str, str] = {
    _I.DATE: "Interaction date",
    _I.TIME: "Interaction time",
    _I.STARTED_AT: "Interaction start (UTC)",
    _I.ENDED_AT: "Interaction end (UTC)",
    _I.DURATION: "Duration (seconds)",
    _I.TALK_TIME: "Talk time (seconds)",
    _I.AGENT: "Agent",
    _I.AGENT_ID: "Agent ID",
    _I.DIRECTION: "Direction",
    _I.CHANNEL: "Channel",
    _I.CALL_GROUPS: "Call groups",
    _I.LANGUAGE: "Language",
    _I.COUNTRY: "Country",
    _I.NUMBER_DIALED: "Number dialed",
    _I.INTERACTION_ID: "Interaction ID",
    _I.LINK: "Link to Creovai interaction",
}
_CUSTOMER_QUESTION_TEXTS: Mapping[str, str] = {
    _C.NAME: "Customer name",
    _C.PHONE: "Customer phone",
    _C.CUSTOMER_ID: "Customer ID",
    _C.EMAIL: "Customer email",
}
# Not the bare key: `duration` is a response metadata key of Qualtrics, `agent` is ambiguous.
_DETAIL_FIELD_NAMES: Mapping[str, str] = {
    _I.DATE: "interaction_date",
    _I.TIME: "interaction_time",
    _I.STARTED_AT: "started_at",
    _I.ENDED_AT: "ended_at",
    _I.DURATION: "duration_seconds",
    _I.TALK_TIME: "talk_time_seconds",
    _I.AGENT: "agent_name",
    _I.AGENT_ID: "agent_id",
    _I.DIRECTION: "direction",
    _I.CHANNEL: "channel",
    _I.CALL_GROUPS: "call_groups",
    _I.LANGUAGE: "language",
    _I.COUNTRY: "country",
    _I.NUMBER_DIALED: "number_dialed",
    _I.INTERACTION_ID: "interaction_id",
    _I.LINK: "interaction_link",
}
_CUSTOMER_FIELD_NAMES: Mapping[str, str] = {
    _C.NAME: "customer_name",
    _C.PHONE: "customer_phone",
    _C.CUSTOMER_ID: "customer_id",
    _C.EMAIL: "customer_email",
}
# Design §4: "String for ids, links, phone, email, names; Nominal for the rest; Scale for
# durations; Date for date".
_DETAIL_VARIABLE_TYPES: Mapping[str, VariableType] = {
    _I.DATE: VariableType.DATE,
    _I.DURATION: VariableType.SCALE,
    _I.TALK_TIME: VariableType.SCALE,
    _I.AGENT: VariableType.STRING,
    _I.AGENT_ID: VariableType.STRING,
    _I.NUMBER_DIALED: VariableType.STRING,
    _I.INTERACTION_ID: VariableType.STRING,
    _I.LINK: VariableType.STRING,
}
_CUSTOMER_VARIABLE_TYPES: Mapping[str, VariableType] = dict.fromkeys(
    CustomerDetailKey, VariableType.STRING
)
_FORMAT_VARIABLE_TYPES: Mapping[Format, VariableType] = {
    Format.TEXT: VariableType.NOMINAL,
    Format.BOOLEAN: VariableType.NOMINAL,
    Format.NUMERIC: VariableType.SCALE,
    Format.GROUP: VariableType.NOMINAL,
    Format.MULTI_VALUE_TEXT_SET: VariableType.MULTI_VALUE_NOMINAL,
    Format.VALUE: VariableType.NOMINAL,
    Format.RANGE: VariableType.SCALE,
}
# The format whose embedded field gets the bare key as its default name.
_MAIN_FORMATS: Mapping[Source, Format] = {
    Source.SCORE: Format.RANGE,
    Source.CATEGORY: Format.BOOLEAN,
    Source.CATEGORY_GROUP: Format.BOOLEAN,
    Source.CUSTOM_METADATA: Format.TEXT,
    Source.CALL_GROUP_TYPE: Format.TEXT,
}
_KNOWN_SCORES: Mapping[str, str] = {
    "TEI": "Creovai Effort Index",
    "AIS": "Agent Impact Score",
}
_EXPORT_TAG_SOURCES: Mapping[Source, str] = {
    Source.INTERACTION_DETAIL: "detail",
    Source.CUSTOMER_DETAIL: "customer",
    Source.SCORE: "score",
    Source.CATEGORY: "category",
    Source.CATEGORY_GROUP: "group",
    Source.CUSTOM_METADATA: "metadata",
    Source.CALL_GROUP_TYPE: "callgroup",
}
_NOT_TAG_CHARACTERS = re.compile(r"[^A-Za-z0-9_]")

YES_NO_CHOICES: Mapping[str, str] = {"Yes": "1", "No": "2"}

_NO_VALIDATION: dict[str, Any] = {
    "Settings": {"ForceResponse": "OFF", "ForceResponseType": "ON", "Type": "None"}
}


def _number_validation(maximum: str, decimals: str) -> dict[str, Any]:
    return {
        "Settings": {
            "ForceResponse": "OFF",
            "ForceResponseType": "ON",
            "Type": "ContentType",
            "ContentType": "ValidNumber",
            "ValidNumber": {"Min": "0", "Max": maximum, "NumDecimals": decimals},
        }
    }


def default_field_name(field: DataField) -> str:
    """The embedded-data field name of a field without a label (may exceed 100 characters)."""
    if field.source is Source.INTERACTION_DETAIL:
        return _DETAIL_FIELD_NAMES.get(field.key, field.key)
    if field.source is Source.CUSTOMER_DETAIL:
        return _CUSTOMER_FIELD_NAMES.get(field.key, field.key)
    if _MAIN_FORMATS.get(field.source) is field.format:
        return field.key
    return f"{field.key}_{field.format.value}"


def embedded_field_name(field: DataField) -> str:
    """The name of the embedded-data field a field fills: its label, or the default."""
    return field.label or default_field_name(field)


def default_question_text(field: DataField) -> str:
    """The question text of a field without a label."""
    key, fmt = field.key, field.format
    match field.source:
        case Source.INTERACTION_DETAIL:
            return _DETAIL_QUESTION_TEXTS.get(key, key)
        case Source.CUSTOMER_DETAIL:
            return _CUSTOMER_QUESTION_TEXTS.get(key, key)
        case Source.SCORE:
            name = f"{key} ({_KNOWN_SCORES[key]})" if key in _KNOWN_SCORES else key
            return f"{name} on a 0-10 scale" if fmt is Format.RANGE else name
        case Source.CATEGORY | Source.CATEGORY_GROUP if fmt is Format.NUMERIC:
            return f"{key} occurred (1 = yes, 0 = no)"
        case Source.CATEGORY_GROUP if fmt is Format.GROUP:
            return f"{key}: which categories occurred?"
        case Source.CATEGORY | Source.CATEGORY_GROUP:
            return f"{key} occurred?"
        case _:
            return key


def question_text(field: DataField) -> str:
    return field.label or default_question_text(field)


def target_key(field: DataField) -> str:
    """The stable identity of the Qualtrics object a field fills (see the module docstring)."""
    if field.placement is Placement.EMBEDDED_DATA:
        return f"embedded_data:{embedded_field_name(field)}"
    return f"{field.source.value}:{field.key}:{field.format.value}:question"


def variable_type(field: DataField) -> VariableType:
    """The VariableType of a field's embedded-data declaration (design §4 table)."""
    if field.format is Format.TEXT:
        if field.source is Source.INTERACTION_DETAIL:
            return _DETAIL_VARIABLE_TYPES.get(field.key, VariableType.NOMINAL)
        if field.source is Source.CUSTOMER_DETAIL:
            return _CUSTOMER_VARIABLE_TYPES.get(field.key, VariableType.STRING)
    return _FORMAT_VARIABLE_TYPES[field.format]


def data_export_tag(field: DataField) -> str:
    """A question's DataExportTag: readable, unique per question identity, ≤ 100 characters.

    `creovai_{source}_{key}_{format}`, e.g. `creovai_score_TEI_range`. A key that is not plain
    `[A-Za-z0-9_]`, or too long, is shortened and disambiguated with a hash of the identity, so
    two keys never share a tag (e.g. `Repeat contact` and `Repeat_contact`).
    """
    source = _EXPORT_TAG_SOURCES[field.source]
    fmt = field.format.value
    readable = _NOT_TAG_CHARACTERS.sub("_", field.key)
    tag = f"creovai_{source}_{readable}_{fmt}"
    if readable == field.key and len(tag) <= MAX_EXPORT_TAG_LENGTH:
        return tag
    digest = hashlib.sha256(target_key(field).encode()).hexdigest()[:8]
    room = MAX_EXPORT_TAG_LENGTH - len(f"creovai_{source}__{digest}_{fmt}")
    return f"creovai_{source}_{readable[:room]}_{digest}_{fmt}"


@dataclass(frozen=True, slots=True)
class QuestionTarget:
    """A survey question: its definition to POST (new) or PUT (existing QID), and its choices."""

    target_key: str
    data_export_tag: str
    question_type: str  # "MC" or "TE"
    selector: str  # "SAVR", "MAVR" or "SL"
    definition: dict[str, Any]
    # Choice label → choice id, in ChoiceOrder; empty for text-entry questions.
    choices: dict[str, str] = dataclasses.field(default_factory=dict)

    def field_map_entry(self, question_id: str) -> dict[str, Any]:
        """What the project's field map stores for this question once it exists as QID."""
        return {"kind": "question", "question_id": question_id, "choices": dict(self.choices)}


@dataclass(frozen=True, slots=True)
class EmbeddedFieldTarget:
    """An embedded-data field declared in the survey flow's EmbeddedData element."""

    target_key: str
    field_name: str
    variable_type: VariableType

    def flow_item(self) -> dict[str, Any]:
        """The item of the flow's EmbeddedData element that declares this field."""
        return {
            "Description": self.field_name,
            "Type": "Custom",
            "Field": self.field_name,
            "VariableType": self.variable_type.value,
            "DataVisibility": [],
            "AnalyzeText": False,
        }

    def field_map_entry(self) -> dict[str, Any]:
        """What the project's field map stores for this field once it is declared."""
        return {
            "kind": "embedded_data",
            "field": self.field_name,
            "variable_type": self.variable_type.value,
        }


Target = QuestionTarget | EmbeddedFieldTarget


def _reserved(name: str, kind: VariableType) -> EmbeddedFieldTarget:
    return EmbeddedFieldTarget(f"embedded_data:{name}", name, kind)


# Filled in every response whatever the selection: the interaction, and the trigger that matched.
RESERVED_EMBEDDED_FIELDS: tuple[EmbeddedFieldTarget, ...] = (
    _reserved(INTERACTION_ID_FIELD, VariableType.STRING),
    _reserved(TRIGGER_FIELD, VariableType.NOMINAL),
)


def _previous_choices(entry: Mapping[str, Any] | None) -> dict[str, str]:
    """The label → id choices a field map entry recorded, ignoring anything malformed."""
    choices = entry.get("choices") if isinstance(entry, Mapping) else None
    if not isinstance(choices, Mapping):
        return {}
    return {
        label: str(choice)
        for label, choice in choices.items()
        if isinstance(label, str)
        and not isinstance(choice, bool)
        and isinstance(choice, int | str)
        and str(choice).isdecimal()
    }


def stable_choices(labels: Sequence[str], previous: Mapping[str, str]) -> dict[str, str]:
    """Choice ids for `labels` (in order) that never move: see the module docstring."""
    if not previous:
        return {label: str(number) for number, label in enumerate(labels, start=1)}
    next_id = max(int(choice) for choice in previous.values()) + 1
    choices: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        choice = previous.get(label)
        if choice is None or choice in used:
            choice, next_id = str(next_id), next_id + 1
        choices[label] = choice
        used.add(choice)
    for label, choice in previous.items():  # retired labels keep their choice
        if label not in choices and choice not in used:
            choices[label] = choice
            used.add(choice)
    return choices


def _description(text: str) -> str:
    # QuestionDescription is plain text of at most 100 characters for several question types.
    if len(text) <= MAX_LABEL_LENGTH:
        return text
    return text[: MAX_LABEL_LENGTH - 1] + "…"


def _definition(
    text: str,
    tag: str,
    question_type: str,
    selector: str,
    *,
    choices: Mapping[str, str] | None = None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        # QuestionText and choice labels are HTML in Qualtrics; a name like "Q&A <team>" is text.
        "QuestionText": html.escape(text, quote=False),
        "DataExportTag": tag,
        "QuestionType": question_type,
        "Selector": selector,
    }
    if choices is not None:
        definition["SubSelector"] = "TX"
    definition["Configuration"] = {"QuestionDescriptionOption": "UseText"}
    definition["QuestionDescription"] = _description(text)
    if choices is not None:
        definition["Choices"] = {
            choice: {"Display": html.escape(label, quote=False)}
            for label, choice in choices.items()
        }
        definition["ChoiceOrder"] = list(choices.values())
        definition["RecodeValues"] = {choice: choice for choice in choices.values()}
    definition["Validation"] = validation or _NO_VALIDATION
    definition["Language"] = []
    return definition


def _choice_labels(field: DataField, catalog: CatalogDocument) -> list[str]:
    if field.format is Format.GROUP:
        group = catalog.category_group(field.key) if field.source is Source.CATEGORY_GROUP else None
        if group is None:
            raise ValueError(f"{field.describe()}: no such category group in the catalogue")
        return list(group.members)
    score = catalog.score(field.key) if field.source is Source.SCORE else None
    if score is None or not score.ranges:
        raise ValueError(f"{field.describe()}: no score with labelled ranges in the catalogue")
    return [band.label for band in score.ranges]


def question_target(
    field: DataField, catalog: CatalogDocument, previous: Mapping[str, Any] | None = None
) -> QuestionTarget:
    """The question of a question field; `previous` is its current field map entry, if any."""
    key, tag, text = target_key(field), data_export_tag(field), question_text(field)
    match field.format:
        case Format.TEXT:
            return QuestionTarget(key, tag, "TE", "SL", _definition(text, tag, "TE", "SL"))
        case Format.NUMERIC | Format.RANGE:
            limits = ("1", "0") if field.format is Format.NUMERIC else ("10", "1")
            definition = _definition(text, tag, "TE", "SL", validation=_number_validation(*limits))
            return QuestionTarget(key, tag, "TE", "SL", definition)
        case Format.BOOLEAN:
            choices = dict(YES_NO_CHOICES)
            definition = _definition(text, tag, "MC", "SAVR", choices=choices)
            return QuestionTarget(key, tag, "MC", "SAVR", definition, choices)
        case Format.GROUP | Format.VALUE:
            labels = _choice_labels(field, catalog)
            choices = stable_choices(labels, _previous_choices(previous))
            selector = "MAVR" if field.format is Format.GROUP else "SAVR"
            definition = _definition(text, tag, "MC", selector, choices=choices)
            return QuestionTarget(key, tag, "MC", selector, definition, choices)
        case _:
            raise ValueError(f"{field.describe()}: format {field.format.value!r} has no question")


def embedded_field_target(field: DataField) -> EmbeddedFieldTarget:
    return EmbeddedFieldTarget(target_key(field), embedded_field_name(field), variable_type(field))


def build_targets(
    fields: Sequence[DataField],
    catalog: CatalogDocument,
    *,
    field_map: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Target]:
    """The Qualtrics target of each field, in selection order, then `RESERVED_EMBEDDED_FIELDS`.

    Expects a selection `validate_selection` accepts (so `targets[i]` is the target of
    `fields[i]`); raises ValueError for a field it cannot shape (e.g. a `group` question of a
    group the catalogue lacks). Pass the project's current `field_map` to keep choice ids stable.
    """
    existing = field_map or {}
    targets: list[Target] = []
    for field in fields:
        if field.placement is Placement.QUESTION:
            targets.append(question_target(field, catalog, existing.get(target_key(field))))
        else:
            targets.append(embedded_field_target(field))
    targets.extend(RESERVED_EMBEDDED_FIELDS)
    return targets
