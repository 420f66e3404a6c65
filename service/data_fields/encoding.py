"""Encoding an interaction into the `values` of a Qualtrics create-response request (design §4).

Usage: `compile_plan(fields, field_map, catalog)` once per integration (per sync), then
`plan.encode(interaction, trigger_name=..., creovai_app_url=...)` per interaction;
`encode_response(...)` does both in one call (and so compiles every time: it cannot know
whether the field map or catalogue it is given changed since the last call).

**The field map** (what the project stores after syncing the survey), keyed by `target_key`:

- a question: `{"kind": "question", "question_id": "QID3", "choices": {"Yes": "1", "No": "2"}}`
  (`choices`: label → choice id, for multiple-choice questions; see `QuestionTarget`);
- an embedded field: `{"kind": "embedded_data", "field": "TEI", "variable_type": "Scale"}`.

A field whose target is missing or malformed there is left out, with the reason in the preview.

**Exact encodings** (the same for both placements, except where a question needs choice ids):

- `date` / `time`: the start in the UTC offset `started_at` carries, `YYYY-MM-DD` / `HH:MM:SS`;
  `started_at` / `ended_at` and the response's `startDate` / `endDate`: UTC, whole seconds,
  `YYYY-MM-DDTHH:MM:SSZ` (fractions of a second are dropped, never rounded up past the moment).
- `duration` / `talk_time`: whole seconds rounded half up, as a JSON integer (also in a
  question's `QIDn_TEXT`: numbers stay numbers whatever the placement). No duration in the
  payload, no duration: it is not derived from start and end.
- `numeric`: the integer `1` / `0`. `range`: a string with exactly one decimal, `"4.6"`, `"10.0"`
  (a string, so the decimal survives every JSON hop): `(value - min) / (max - min) * 10`,
  computed on the decimal numbers as written (4.55 → `"4.6"`), rounded half up, clamped to 0-10.
- `value`: the label of the band whose `[min, max)` holds the score; the last band also holds
  its max. A score outside the scale counts in the first or last band, as `range` clamps.
- `boolean`: `"Yes"` / `"No"` as embedded data; as a question, the choice id.
- Multiple-choice answers are choice ids as JSON integers (`"QID3": 1`, `"QID4": [1, 3]`): the
  questions set `RecodeValues` equal to the ids, and Qualtrics recodes are numbers.
- Lists (call groups, a call-group type's groups, a group's categories as text) are names joined
  by `", "` (each name once, a comma inside a name replaced by `";"`), in catalogue order: a
  group's catalogue members first, then categories the interaction itself places in the group,
  in payload order; call groups have no catalogue order, so payload order.
- A category group occurred when one of its catalogue members occurred, or a category that
  occurred names the group in its `groups`.
- `link`: the interaction's `url`, else `{creovai_app_url}/interactions/{id}` (the id
  percent-encoded).
- Custom metadata: strings as given (trimmed), numbers in their JSON spelling, booleans
  `true` / `false`.
- Values the interaction lacks (no email, no such score or metadata, nothing of a group occurred)
  and blank strings are left out, never sent as `""` or null.

Every response carries `startDate`, `endDate` (the end, or the start when there is no end),
`finished: 1`, `userLanguage` when the language maps to a Qualtrics code, and the reserved
embedded fields `creovai_interaction_id` and `creovai_trigger`.

**Why code generation.** Delivery encodes every matched interaction, and encoding must stay a
small fraction of validating the payload. `compile_plan` therefore resolves everything that does
not depend on the interaction (catalogue lookups, choice ids, band boundaries, field names) once
and generates one straight-line Python function for the selection (`EncodingPlan.source` shows
it). Every name, label and id reaches that function as a bound constant, never as source text,
so no catalogue or field-map content can change the code. The compiled code object is shared
by every plan of the same shape (`_compiled`), and the per-field preview (`fields`) is only
built when asked for.

A field the plan cannot fill (not synced yet, a score gone from the catalogue, a malformed
field-map entry) never fails the encoding: it is left out, and the preview says why.
"""

import bisect
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from service.catalog.schemas import CatalogDocument
from service.data_fields.languages import QUALTRICS_LANGUAGES
from service.data_fields.schemas import (
    CUSTOMER_DETAIL_KEYS,
    INTERACTION_DETAIL_KEYS,
    DataField,
    EncodedField,
    FieldTarget,
    Format,
    Placement,
    Source,
)
from service.data_fields.targets import (
    INTERACTION_ID_FIELD,
    TRIGGER_FIELD,
    YES_NO_CHOICES,
    target_key,
)
from service.data_fields.validation import allowed_formats
from service.data_fields.values import (
    band_boundaries,
    band_index,
    call_group_names,
    clock_text,
    day_text,
    group_members_encoder,
    link,
    metadata_text,
    names_group,
    occurrences,
    range_encoder,
    utc_text,
    whole_seconds,
)
from service.interactions.schemas import Interaction

FieldMap = Mapping[str, Mapping[str, Any]]
EncodeFunction = Callable[[Interaction, str, str], dict[str, Any]]

METADATA_KEYS = frozenset({"startDate", "endDate", "finished", "userLanguage"})
RESERVED_KEYS = frozenset({INTERACTION_ID_FIELD, TRIGGER_FIELD})
_CONNECTOR_KEYS = METADATA_KEYS | RESERVED_KEYS
_QUESTION_ID = re.compile(r"QID[A-Za-z0-9]+")
_CHOICE_FORMATS = frozenset({Format.BOOLEAN, Format.VALUE, Format.GROUP})


@dataclass(frozen=True, slots=True)
class _Step:
    """What the preview needs to know about one field of the plan."""

    position: int
    field: DataField
    target_key: str
    target: FieldTarget | None
    skip_reason: str | None  # the field is never encoded, e.g. not synced
    absent_reason: Callable[[Interaction], str]  # why the value was left out this time
    display: Callable[[Any], str]


class EncodedResponse:
    """The `values` of one create-response request, and (on demand) the per-field preview."""

    __slots__ = ("_fields", "_interaction", "_plan", "values")

    def __init__(
        self, values: dict[str, Any], plan: "EncodingPlan", interaction: Interaction
    ) -> None:
        self.values = values
        self._plan = plan
        self._interaction = interaction
        self._fields: list[EncodedField] | None = None

    @property
    def fields(self) -> list[EncodedField]:
        """Each field in selection order: its target, and its value or why it was left out."""
        if self._fields is None:
            self._fields = self._plan.describe(self._interaction, self.values)
        return self._fields

    def body(self) -> dict[str, Any]:
        """The JSON body of `POST /API/v3/surveys/{surveyId}/responses`."""
        return {"values": self.values}


class EncodingPlan:
    """A selection compiled against a field map and a catalogue; encodes any interaction."""

    def __init__(self, function: EncodeFunction, steps: Sequence[_Step], source: str) -> None:
        self._function = function
        self.steps: tuple[_Step, ...] = tuple(steps)
        self.source = source  # the generated code, for debugging

    def values(
        self, interaction: Interaction, *, trigger_name: str, creovai_app_url: str
    ) -> dict[str, Any]:
        """Just the `values` object (the delivery path)."""
        return self._function(interaction, trigger_name, creovai_app_url)

    def encode(
        self, interaction: Interaction, *, trigger_name: str, creovai_app_url: str
    ) -> EncodedResponse:
        values = self._function(interaction, trigger_name, creovai_app_url)
        return EncodedResponse(values, self, interaction)

    def describe(self, interaction: Interaction, values: Mapping[str, Any]) -> list[EncodedField]:
        encoded: list[EncodedField] = []
        for step in self.steps:
            value = None
            if step.target is not None and step.skip_reason is None:
                value = values.get(step.target.values_key)
            if value is None:
                reason = step.skip_reason or step.absent_reason(interaction)
                display = None
            else:
                reason, display = None, step.display(value)
            encoded.append(
                EncodedField(
                    position=step.position,
                    field=step.field,
                    target_key=step.target_key,
                    target=step.target,
                    value=value,
                    display=display,
                    reason=reason,
                )
            )
        return encoded


def _never_absent(_: Interaction) -> str:
    return "no value"


def _text_display(value: Any) -> str:
    return str(value)


def _static(reason: str) -> Callable[[Interaction], str]:
    return lambda _: reason


def _choice_number(choice: str) -> int | str:
    return int(choice) if choice.isdecimal() else choice


class _Skip(Exception):
    """A field that cannot be encoded with this field map or catalogue; the reason is shown."""


_HELPERS: dict[str, Any] = {
    "_utc": utc_text,
    "_clock": clock_text,
    "_day": day_text,
    "_whole": whole_seconds,
    "_link": link,
    "_call_groups": call_group_names,
    "_metadata_text": metadata_text,
    "_names_group": names_group,
    "_bisect": bisect.bisect_right,
    "_LANGUAGES": dict(QUALTRICS_LANGUAGES),
    "_INTERACTION_ID_FIELD": INTERACTION_ID_FIELD,
    "_TRIGGER_FIELD": TRIGGER_FIELD,
}

# Shared facts of the interaction, computed once per call by the fields that need them.
_FACTS: dict[str, str] = {
    "occurred": (
        "occurred = set()\n"
        "for category in i.categories:\n"
        "    if category.occurrences:\n"
        "        occurred.add(category.name)"
    ),
    "grouped": (  # replaces "occurred" when a group field needs the payload's groups too
        "occurred = set()\n"
        "grouped = []\n"
        "for category in i.categories:\n"
        "    if category.occurrences:\n"
        "        occurred.add(category.name)\n"
        "        if category.groups:\n"
        "            grouped.append(category)"
    ),
    "scores": (  # the first of a name wins, as in Interaction.score
        "scores = {}\n"
        "for score in i.scores:\n"
        "    name = score.name\n"
        "    if name not in scores:\n"
        "        scores[name] = score.value"
    ),
    "metadata": "metadata = i.metadata",
    "agent": "agent = i.agent",
    "customer": "customer = i.customer",
}

_PRESENT_TEXT = """\
v = {expression}
if v:
    v = v.strip()
    if v:
        values[{key}] = v"""

# interaction_detail key → (code template, facts needed, reason when absent or None if never).
_DETAIL_CODE: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "date": ("values[{key}] = _day(start)", (), None),
    "time": ("values[{key}] = _clock(start)", (), None),
    "started_at": ("values[{key}] = start_utc", (), None),
    "ended_at": ("if end is not None:\n    values[{key}] = end_utc", (), "no end time"),
    "duration": (
        "v = i.duration_seconds\nif v is not None:\n    values[{key}] = _whole(v)",
        (),
        "no duration",
    ),
    "talk_time": (
        "v = i.talk_time_seconds\nif v is not None:\n    values[{key}] = _whole(v)",
        (),
        "no talk time",
    ),
    "agent": (
        _PRESENT_TEXT.format(expression="agent.name if agent is not None else None", key="{key}"),
        ("agent",),
        "no agent name",
    ),
    "agent_id": (
        _PRESENT_TEXT.format(expression="agent.id if agent is not None else None", key="{key}"),
        ("agent",),
        "no agent id",
    ),
    "direction": ("values[{key}] = str(i.direction)", (), None),
    "channel": ("values[{key}] = str(i.channel)", (), None),
    "call_groups": (
        "if i.call_groups:\n    values[{key}] = _call_groups(i.call_groups)",
        (),
        "no call groups",
    ),
    "language": ("v = i.language\nif v:\n    values[{key}] = v", (), "no language"),
    "country": ("v = i.country\nif v:\n    values[{key}] = v", (), "no country"),
    "number_dialed": (
        _PRESENT_TEXT.format(expression="i.number_dialed", key="{key}"),
        (),
        "no number dialed",
    ),
    "interaction_id": ("values[{key}] = i.id", (), None),
    "link": ("values[{key}] = _link(i, base)", (), None),
}
_CUSTOMER_ATTRIBUTES = {"name": "name", "phone": "phone", "customer_id": "id", "email": "email"}
assert set(_DETAIL_CODE) == set(INTERACTION_DETAIL_KEYS)  # noqa: S101 (import-time invariant)
assert set(_CUSTOMER_ATTRIBUTES) == set(CUSTOMER_DETAIL_KEYS)  # noqa: S101


class _Compiler:
    """Builds the generated function: fixed templates, and constants bound by name."""

    def __init__(self, field_map: FieldMap, catalog: CatalogDocument) -> None:
        self.field_map = field_map
        self.catalog = catalog
        self.namespace: dict[str, Any] = dict(_HELPERS)
        self.facts: list[str] = []
        self.body: list[str] = []
        self.steps: list[_Step] = []
        self.filled: dict[str, int] = {}  # values key → position of the field filling it

    def const(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def need(self, *facts: str) -> None:
        for fact in facts:
            if fact not in self.facts:
                self.facts.append(fact)

    def emit(self, position: int, code: str) -> None:
        self.body.append(f"# fields[{position}]")
        self.body.extend(code.splitlines())

    def add(self, position: int, field: DataField) -> None:
        key = target_key(field)
        target: FieldTarget | None = None
        absent: Callable[[Interaction], str] = _never_absent
        display: Callable[[Any], str] = _text_display
        skip: str | None = None
        try:
            self.check_format(field)
            target, choices = self.resolve_target(key, field)
            first = self.filled.get(target.values_key)
            if first is not None or target.values_key in _CONNECTOR_KEYS:
                owner = "the connector" if first is None else f"fields[{first}]"
                raise _Skip(f"its Qualtrics key {target.values_key!r} is already filled by {owner}")
            code, absent, display = self.field_code(field, target, choices)
            self.filled[target.values_key] = position
            self.emit(position, code.format(key=self.const(target.values_key)))
        except _Skip as exc:
            skip = str(exc)
        self.steps.append(_Step(position, field, key, target, skip, absent, display))

    @staticmethod
    def check_format(field: DataField) -> None:
        if field.format not in allowed_formats(field.source, field.placement):
            raise _Skip(f"format {field.format.value!r} is not allowed for this field")

    def resolve_target(self, key: str, field: DataField) -> tuple[FieldTarget, dict[str, str]]:
        entry = self.field_map.get(key)
        if entry is None:
            raise _Skip("not in the survey yet: save the data fields to update the survey")
        if field.placement is Placement.EMBEDDED_DATA:
            name = entry.get("field")
            if entry.get("kind") != "embedded_data" or not isinstance(name, str) or not name:
                raise _Skip(f"the field map entry of {key!r} is not a valid embedded field")
            kind = entry.get("variable_type")
            return FieldTarget(
                kind=Placement.EMBEDDED_DATA,
                values_key=name,
                embedded_field=name,
                variable_type=kind if isinstance(kind, str) else None,
            ), {}
        question_id = entry.get("question_id")
        if (
            entry.get("kind") != "question"
            or not isinstance(question_id, str)
            or not _QUESTION_ID.fullmatch(question_id)
        ):
            raise _Skip(f"the field map entry of {key!r} is not a valid question")
        raw_choices = entry.get("choices")
        choices = (
            {
                label: str(choice)
                for label, choice in raw_choices.items()
                if isinstance(label, str) and isinstance(choice, str | int)
            }
            if isinstance(raw_choices, Mapping)
            else {}
        )
        is_choice = field.format in _CHOICE_FORMATS
        values_key = question_id if is_choice else f"{question_id}_TEXT"
        target = FieldTarget(
            kind=Placement.QUESTION, values_key=values_key, question_id=question_id
        )
        return target, choices

    def field_code(
        self, field: DataField, target: FieldTarget, choices: dict[str, str]
    ) -> tuple[str, Callable[[Interaction], str], Callable[[Any], str]]:
        """(code template with `{key}`, why-absent, display) of one field."""
        source = field.source
        if source is Source.INTERACTION_DETAIL:
            if field.key not in _DETAIL_CODE:
                raise _Skip(f"unknown interaction detail {field.key!r}")
            code, facts, reason = _DETAIL_CODE[field.key]
            self.need(*facts)
            absent = _static(f"the interaction has {reason}") if reason else _never_absent
            return code, absent, _text_display
        if source is Source.CUSTOMER_DETAIL:
            attribute = _CUSTOMER_ATTRIBUTES.get(field.key)
            if attribute is None:
                raise _Skip(f"unknown customer detail {field.key!r}")
            self.need("customer")
            expression = f"customer.{attribute} if customer is not None else None"
            reason = f"the interaction has no customer {field.key.replace('_', ' ')}"
            return (
                _PRESENT_TEXT.format(expression=expression, key="{key}"),
                _static(reason),
                _text_display,
            )
        if source is Source.SCORE:
            return self.score_code(field, target, choices)
        if source in (Source.CATEGORY, Source.CATEGORY_GROUP):
            return self.category_code(field, target, choices)
        if source is Source.CUSTOM_METADATA:
            self.need("metadata")
            name = self.const(field.key)
            code = (
                f"v = metadata.get({name})\n"
                "if v is not None:\n"
                "    v = v.strip() if v.__class__ is str else _metadata_text(v)\n"
                "    if v:\n"
                "        values[{key}] = v"
            )
            reason = f"the interaction has no value for metadata field {field.key!r}"
            return code, _static(reason), _text_display
        group_type = self.const(field.key)
        code = (
            "if i.call_groups:\n"
            f"    v = _call_groups(i.call_groups, {group_type})\n"
            "    if v:\n"
            "        values[{key}] = v"
        )
        reason = f"the interaction has no call group of type {field.key!r}"
        return code, _static(reason), _text_display

    def score_code(
        self, field: DataField, target: FieldTarget, choices: dict[str, str]
    ) -> tuple[str, Callable[[Interaction], str], Callable[[Any], str]]:
        score = self.catalog.score(field.key)
        if score is None:
            raise _Skip(f"score {field.key!r} is not in the catalogue")
        self.need("scores")
        name = self.const(field.key)
        missing = f"the interaction has no score {field.key!r}"
        if field.format is Format.RANGE:
            encode = self.const(range_encoder(score.min, score.max))
            code = f"v = scores.get({name})\nif v is not None:\n    values[{{key}}] = {encode}(v)"
            return code, _static(missing), _text_display
        if not score.ranges:
            raise _Skip(f"score {field.key!r} has no labelled ranges in the catalogue")
        labels = [band.label for band in score.ranges]
        answers: list[int | str | None]
        if target.kind is Placement.QUESTION:
            answers = [_choice_number(c) if (c := choices.get(x)) else None for x in labels]
        else:
            answers = list(labels)
        code = (
            f"v = scores.get({name})\n"
            "if v is not None:\n"
            f"    v = {self.const(answers)}[_bisect({self.const(band_boundaries(score))}, v)]\n"
            "    if v is not None:\n"
            "        values[{key}] = v"
        )

        def absent(interaction: Interaction) -> str:
            value = interaction.score(field.key)
            if value is None:
                return missing
            return _not_a_choice(labels[band_index(score, value)], target)

        return code, absent, _choice_display(choices) if choices else _text_display

    def category_code(
        self, field: DataField, target: FieldTarget, choices: dict[str, str]
    ) -> tuple[str, Callable[[Interaction], str], Callable[[Any], str]]:
        question = target.kind is Placement.QUESTION
        self.need("occurred")
        name = self.const(field.key)
        members: tuple[str, ...] = ()
        if field.source is Source.CATEGORY:
            occurred = f"{name} in occurred"
        else:
            group = self.catalog.category_group(field.key)
            members = tuple(group.members) if group is not None else ()
            member_set = self.const(frozenset(members))
            self.need("grouped")
            occurred = f"(not {member_set}.isdisjoint(occurred) or _names_group(grouped, {name}))"
        if field.format in (Format.BOOLEAN, Format.NUMERIC):
            yes: int | str
            no: int | str
            if field.format is Format.NUMERIC:
                yes, no = 1, 0
            elif not question:
                yes, no = "Yes", "No"
            elif all(choices.get(label) for label in YES_NO_CHOICES):
                yes, no = _choice_number(choices["Yes"]), _choice_number(choices["No"])
            else:
                raise _Skip(f"question {target.question_id} has no Yes/No choices")
            code = f"values[{{key}}] = {self.const(yes)} if {occurred} else {self.const(no)}"
            display = _choice_display(choices) if question else _text_display
            return code, _never_absent, display
        # The group's categories that occurred: choice ids (question) or joined names.
        found = group_members_encoder(field.key, members)
        if question:
            ids = {label: _choice_number(choice) for label, choice in choices.items()}
            collect = group_members_encoder(field.key, members, ids.get)
        else:
            collect = group_members_encoder(field.key, members, join=True)
        code = f"v = {self.const(collect)}(grouped, occurred)\nif v:\n    values[{{key}}] = v"

        def absent(interaction: Interaction) -> str:
            occurred, grouped = occurrences(interaction.categories)
            names = found(grouped, occurred)
            if not names:
                return f"no category of group {field.key!r} occurred"
            return _not_a_choice(", ".join(names), target)

        return code, absent, _choice_display(choices) if question else _text_display

    def build(self) -> EncodingPlan:
        lines = [
            "def encode(i, trigger, base):",
            "    start = i.started_at",
            "    start_utc = _utc(start)",
            "    end = i.ended_at",
            "    end_utc = start_utc if end is None else _utc(end)",
            "    values = {'startDate': start_utc, 'endDate': end_utc, 'finished': 1}",
            "    language = _LANGUAGES.get(i.language)",
            "    if language is not None:",
            "        values['userLanguage'] = language",
            "    values[_INTERACTION_ID_FIELD] = i.id",
            "    if trigger:",
            "        values[_TRIGGER_FIELD] = trigger",
        ]
        facts = self.facts
        if "grouped" in facts:
            facts = [fact for fact in facts if fact != "occurred"]
        lines.extend(f"    {line}" for fact in facts for line in _FACTS[fact].splitlines())
        lines.extend(f"    {line}" for line in self.body)
        lines.append("    return values")
        source = "\n".join(lines) + "\n"
        namespace = dict(self.namespace)
        # Fixed templates only: every name, label and id is a constant of `namespace`.
        exec(_compiled(source), namespace)  # noqa: S102
        function: EncodeFunction = namespace["encode"]
        return EncodingPlan(function, self.steps, source)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> CodeType:
    """Python's compiler is most of a plan's cost, and the source depends only on the shape of
    the selection (constants are bound by name), so every plan of one selection shares it."""
    return compile(source, "<data-field encoding plan>", "exec")


def _not_a_choice(labels: str, target: FieldTarget) -> str:
    return (
        f"{labels} is not a choice of question {target.question_id} yet: save the data fields "
        "again to update the survey"
    )


def _choice_display(choices: Mapping[str, str]) -> Callable[[Any], str]:
    labels = {str(choice): label for label, choice in choices.items()}

    def display(value: Any) -> str:
        chosen = value if isinstance(value, list) else [value]
        return ", ".join(labels.get(str(choice), str(choice)) for choice in chosen)

    return display


def compile_plan(
    fields: Sequence[DataField], field_map: FieldMap, catalog: CatalogDocument
) -> EncodingPlan:
    """Compile a selection, once, into a plan that encodes any interaction quickly."""
    compiler = _Compiler(field_map, catalog)
    for position, field in enumerate(fields):
        compiler.add(position, field)
    return compiler.build()


def encode_response(
    interaction: Interaction,
    fields: Sequence[DataField],
    field_map: FieldMap,
    catalog: CatalogDocument,
    *,
    trigger_name: str,
    creovai_app_url: str,
) -> EncodedResponse:
    """Encode one interaction (compiles a plan each call; reuse `compile_plan` for many)."""
    plan = compile_plan(fields, field_map, catalog)
    return plan.encode(interaction, trigger_name=trigger_name, creovai_app_url=creovai_app_url)
