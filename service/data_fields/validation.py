"""Is a data-field selection valid against the organization's catalogue? (design §4)

`validate_selection` reports every problem at once, each as a `FieldError` whose pointer is the
member to fix (`/body/fields/3/format`) and whose detail names the field (`fields[3] (score
TEI)`) and, for a format problem, the formats that are allowed:

- the format matrix: which formats a source allows (`ALLOWED_FORMATS`); `multi_value_text_set`
  only as embedded data; `value` only for a score with labelled ranges;
- the keys of `interaction_detail` and `customer_detail`; catalogue names (category, category
  group, score, custom metadata field, call-group type) must exist, spelled exactly;
- the same field (source, key, format, placement) twice;
- embedded-data field names: two fields may not fill one field (names compare ignoring case, as
  people read them); a name may not be a reserved one: the connector's (`creovai_...`), a
  response metadata field of Qualtrics (`startDate`, `duration`, ...), a question-like key
  (`QID12`, `QID3_TEXT`) or a Qualtrics system field (`Q_...`); it is at most 100 characters.

Question texts may repeat: a question is identified by its QID and DataExportTag, which are
unique by construction, and two questions reading alike is the admin's call.
"""

import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from service.catalog.schemas import CatalogDocument
from service.data_fields.schemas import (
    CUSTOMER_DETAIL_KEYS,
    INTERACTION_DETAIL_KEYS,
    DataField,
    Format,
    Placement,
    Source,
)
from service.data_fields.targets import (
    MAX_FIELD_NAME_LENGTH,
    RESERVED_EMBEDDED_FIELDS,
    RESERVED_PREFIX,
    embedded_field_name,
)
from service.errors import FieldError

_F = Format

ALLOWED_FORMATS: Mapping[Source, frozenset[Format]] = MappingProxyType(
    {
        Source.INTERACTION_DETAIL: frozenset({_F.TEXT}),
        Source.CUSTOMER_DETAIL: frozenset({_F.TEXT}),
        Source.CUSTOM_METADATA: frozenset({_F.TEXT}),
        Source.CALL_GROUP_TYPE: frozenset({_F.TEXT, _F.MULTI_VALUE_TEXT_SET}),
        Source.CATEGORY: frozenset({_F.BOOLEAN, _F.NUMERIC}),
        Source.CATEGORY_GROUP: frozenset(
            {_F.BOOLEAN, _F.NUMERIC, _F.GROUP, _F.MULTI_VALUE_TEXT_SET}
        ),
        Source.SCORE: frozenset({_F.VALUE, _F.RANGE}),
    }
)
# Formats that only exist as embedded data (a multi-value text set is an embedded-data type).
EMBEDDED_ONLY_FORMATS: frozenset[Format] = frozenset({_F.MULTI_VALUE_TEXT_SET})

# Names in `values` that Qualtrics gives a meaning of its own, and the response columns of its
# exports (compared ignoring case).
RESPONSE_FIELD_NAMES: frozenset[str] = frozenset(
    name.casefold()
    for name in (
        "startDate",
        "endDate",
        "status",
        "ipAddress",
        "progress",
        "duration",
        "finished",
        "recordedDate",
        "responseId",
        "distributionChannel",
        "userLanguage",
        "locationLatitude",
        "locationLongitude",
        "recipientFirstName",
        "recipientLastName",
        "recipientEmail",
        "externalReference",
        "externalDataReference",
    )
)
_QUESTION_LIKE = re.compile(r"qid[0-9]", re.IGNORECASE)
_QUALTRICS_SYSTEM_PREFIX = "q_"

_SOURCE_NOUNS: Mapping[Source, str] = {
    Source.INTERACTION_DETAIL: "an interaction detail",
    Source.CUSTOMER_DETAIL: "a customer detail",
    Source.SCORE: "a score",
    Source.CATEGORY: "a category",
    Source.CATEGORY_GROUP: "a category group",
    Source.CUSTOM_METADATA: "a custom metadata field",
    Source.CALL_GROUP_TYPE: "a call-group type",
}
_DETAIL_KEYS: Mapping[Source, tuple[str, ...]] = {
    Source.INTERACTION_DETAIL: INTERACTION_DETAIL_KEYS,
    Source.CUSTOMER_DETAIL: CUSTOMER_DETAIL_KEYS,
}


def allowed_formats(source: Source, placement: Placement) -> list[Format]:
    """The formats a source allows in a placement, in `Format` order."""
    allowed = ALLOWED_FORMATS[source]
    if placement is Placement.QUESTION:
        allowed = allowed - EMBEDDED_ONLY_FORMATS
    return [fmt for fmt in Format if fmt in allowed]


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _listing(formats: Sequence[Format]) -> str:
    return ", ".join(fmt.value for fmt in formats) or "none"


def _catalogue_names(catalog: CatalogDocument) -> Mapping[Source, list[str]]:
    return {
        Source.CATEGORY: catalog.category_names(),
        Source.CATEGORY_GROUP: [group.name for group in catalog.category_groups],
        Source.SCORE: [score.name for score in catalog.scores],
        Source.CUSTOM_METADATA: [item.name for item in catalog.custom_metadata_fields],
        Source.CALL_GROUP_TYPE: [item.name for item in catalog.call_group_types],
    }


class _Validator:
    def __init__(self, catalog: CatalogDocument, pointer_prefix: str) -> None:
        self.catalog = catalog
        self.prefix = pointer_prefix
        self.errors: list[FieldError] = []
        self.names = _catalogue_names(catalog)
        self.known = {source: frozenset(names) for source, names in self.names.items()}
        self.folded: dict[Source, dict[str, str]] = {}
        self.seen_fields: dict[tuple[Source, str, Format, Placement], int] = {}
        self.seen_names: dict[str, int] = {}

    def add(self, index: int, member: str | None, field: DataField, problem: str) -> None:
        pointer = f"{self.prefix}/{index}" + (f"/{member}" if member else "")
        detail = f"fields[{index}] ({field.describe()}): {problem}"
        self.errors.append(FieldError(pointer=pointer, detail=detail))

    def check(self, index: int, field: DataField) -> None:
        self.check_key(index, field)
        format_ok = self.check_format(index, field)
        identity = (field.source, field.key, field.format, field.placement)
        first = self.seen_fields.setdefault(identity, index)
        if first != index:
            self.add(
                index,
                None,
                field,
                f"the same field as fields[{first}] (same source, key, format and placement)",
            )
        elif format_ok and field.placement is Placement.EMBEDDED_DATA:
            self.check_field_name(index, field)

    def check_key(self, index: int, field: DataField) -> None:
        detail_keys = _DETAIL_KEYS.get(field.source)
        if detail_keys is not None:
            if field.key not in detail_keys:
                hint = self.hint(field.key, detail_keys)
                self.add(
                    index,
                    "key",
                    field,
                    f"unknown key {_quote(field.key)}{hint}; allowed: {', '.join(detail_keys)}",
                )
            return
        if field.key not in self.known[field.source]:
            noun = _SOURCE_NOUNS[field.source]
            hint = self.hint(field.key, self.names[field.source], field.source)
            self.add(
                index, "key", field, f"{_quote(field.key)} is not {noun} of the catalogue{hint}"
            )

    def hint(self, key: str, names: Sequence[str], source: Source | None = None) -> str:
        """` (did you mean "X"?)` when a name differs from the key only by case."""
        if source is None:
            folded = {name.casefold(): name for name in names}
        else:
            folded = self.folded.setdefault(source, {name.casefold(): name for name in names})
        near = folded.get(key.casefold())
        return f" (did you mean {_quote(near)}?)" if near else ""

    def check_format(self, index: int, field: DataField) -> bool:
        source, fmt, placement = field.source, field.format, field.placement
        allowed = allowed_formats(source, placement)
        if fmt not in allowed:
            if fmt in ALLOWED_FORMATS[source]:
                problem = (
                    f"format {fmt.value!r} is only allowed as embedded_data; as a "
                    f"{placement.value}, allowed: {_listing(allowed)}"
                )
            else:
                problem = (
                    f"format {fmt.value!r} is not allowed for {_SOURCE_NOUNS[source]}; "
                    f"allowed: {_listing(allowed)}"
                )
            self.add(index, "format", field, problem)
            return False
        if fmt is Format.VALUE:
            score = self.catalog.score(field.key)
            if score is not None and not score.ranges:
                others = _listing([other for other in allowed if other is not Format.VALUE])
                self.add(
                    index,
                    "format",
                    field,
                    f"format 'value' needs labelled ranges, and score {_quote(field.key)} has "
                    f"none in the catalogue; allowed: {others}",
                )
                return False
        return True

    def check_field_name(self, index: int, field: DataField) -> None:
        name = embedded_field_name(field)
        member = "label" if field.label else "key"
        origin = "" if field.label else "the default "
        problem = _name_problem(name)
        if len(name) > MAX_FIELD_NAME_LENGTH:
            problem = (
                f"the default embedded-data field name is longer than {MAX_FIELD_NAME_LENGTH} "
                "characters; give the field a shorter label"
            )
        if problem:
            self.add(index, member, field, f"{origin}embedded-data field name {problem}")
            return
        first = self.seen_names.setdefault(name.casefold(), index)
        if first != index:
            self.add(
                index,
                member,
                field,
                f"{origin}embedded-data field name {_quote(name)} is already filled by "
                f"fields[{first}] (names compare ignoring case); give one of them another label",
            )


_RESERVED_NAMES = frozenset(target.field_name.casefold() for target in RESERVED_EMBEDDED_FIELDS)


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be an embedded-data field of ours, if it cannot."""
    folded = name.casefold()
    if folded in _RESERVED_NAMES or folded.startswith(RESERVED_PREFIX):
        return (
            f"{_quote(name)} is reserved: names starting with {RESERVED_PREFIX!r} are the "
            "connector's"
        )
    if folded in RESPONSE_FIELD_NAMES:
        return f"{_quote(name)} is a response field of Qualtrics; give the field another label"
    if _QUESTION_LIKE.match(name):
        return f"{_quote(name)} looks like a question id (QID...); give the field another label"
    if folded.startswith(_QUALTRICS_SYSTEM_PREFIX):
        return f"{_quote(name)} is reserved: names starting with 'Q_' are Qualtrics' own"
    return None


def validate_selection(
    fields: Sequence[DataField],
    catalog: CatalogDocument,
    *,
    pointer_prefix: str = "/body/fields",
) -> list[FieldError]:
    """Every problem of the selection against the catalogue, in field order; [] when valid."""
    validator = _Validator(catalog, pointer_prefix)
    for index, field in enumerate(fields):
        validator.check(index, field)
    return validator.errors
