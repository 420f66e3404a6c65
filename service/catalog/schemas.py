"""The catalogue document, and every rule it must satisfy.

The rules live here, in the schema, so every way in (`PUT /v1/catalog`, the `catalog.updated`
webhook event) enforces the same ones, and reports *all* problems at once, each at its location:

- names (and range labels) are stripped of surrounding whitespace, 1-200 characters, with no
  control characters; unique within their list, ignoring case;
- a category group has at least one member, each an existing category spelled exactly as in
  `categories`, none listed twice;
- a score has finite `min < max` (within ±1e12); its ranges are optional, but when given they are
  sorted, each has `min < max` and a label unique within the score, and together they tile the
  score exactly: the first starts at the score's min, each starts where the previous one ends,
  the last ends at the score's max;
- list sizes are bounded (`MAX_*` below), so a huge body is refused early.

Rules about one item run in that item's validator; rules across lists (unique names, group
members) run in `CatalogDocument`'s wrap validator, which runs them even when other parts of the
document failed, so one answer lists every mistake.
"""

import json
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_CATEGORIES = 5000
MAX_CATEGORY_GROUPS = 500
MAX_GROUP_MEMBERS = MAX_CATEGORIES
MAX_SCORES = 500
MAX_SCORE_RANGES = 100
MAX_CUSTOM_METADATA_FIELDS = 500
MAX_CALL_GROUP_TYPES = 500
# Scores in practice are 0-10 or 0-100; the bound keeps `max - min` and the 0-10 scaling of the
# `range` format far from float overflow.
SCORE_BOUND = 1e12

# Control characters, lone surrogates (PostgreSQL cannot store them) and line/paragraph
# separators. Format characters (Cf) stay allowed: emoji sequences need the zero-width joiner.
_NOT_IN_NAMES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ALLOWED_IN_TEXT = frozenset("\t\n\r")

Location = tuple[int | str, ...]


def _quote(text: str) -> str:
    # Lone surrogates (valid in JSON text, not in UTF-8) are shown escaped: messages must encode.
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _name_problem(value: str) -> bool:
    """Whether a stripped string breaks the name rules (for checks on raw input)."""
    return not 0 < len(value) <= MAX_NAME_LENGTH or (
        not value.isprintable()
        and any(unicodedata.category(character) in _NOT_IN_NAMES for character in value)
    )


def _refuse_control_characters(value: str, allowed: frozenset[str]) -> str:
    if value.isprintable():  # fast path: no control, separator or surrogate characters at all
        return value
    for position, character in enumerate(value):
        if character not in allowed and unicodedata.category(character) in _NOT_IN_NAMES:
            raise PydanticCustomError(
                "control_character",
                "Must not contain control characters (found U+{code} at position {position}).",
                {"code": f"{ord(character):04X}", "position": position},
            )
    return value


def _check_name(value: str) -> str:
    return _refuse_control_characters(value, frozenset())


def _check_description(value: str) -> str:
    return _refuse_control_characters(value, _ALLOWED_IN_TEXT)


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_check_name),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION_LENGTH),
    AfterValidator(_check_description),
]
# JSON numbers only: strict refuses "3.3" and true; NaN and Infinity (which Python's JSON parser
# accepts) are refused too.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-SCORE_BOUND, le=SCORE_BOUND)]


class _Problems:
    """Collects problems at their locations and raises them together as one ValidationError.

    Pydantic keeps the locations of a ValidationError raised inside a validator and prefixes
    them with the validator's own, so the API answers precise pointers such as
    `/body/scores/0/ranges/1/min`.
    """

    def __init__(self) -> None:
        self.errors: list[InitErrorDetails] = []

    def add(self, location: Location, kind: str, message: str, value: Any) -> None:
        self.errors.append(
            {"type": PydanticCustomError(kind, message), "loc": location, "input": value}
        )

    def extend(self, exc: ValidationError) -> None:
        for error in exc.errors():
            self.add(error["loc"], error["type"], error["msg"], error["input"])

    def error(self, title: str) -> ValidationError:
        return ValidationError.from_exception_data(title, self.errors)

    def raise_if_any(self, title: str) -> None:
        if self.errors:
            raise self.error(title)


class _CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Category(_CatalogModel):
    """A category the platform detects in interactions, e.g. Frustration."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Frustration",
                    "description": "The customer expresses frustration or annoyance.",
                }
            ]
        }
    )

    name: Name = Field(description="Unique among the categories, ignoring case.")
    description: Description | None = Field(
        default=None,
        description="Free text, up to 2000 characters; line breaks allowed; empty means null.",
    )

    @field_validator("description")
    @classmethod
    def _empty_description_is_none(cls, value: str | None) -> str | None:
        return value or None


class CategoryGroup(_CatalogModel):
    """A named set of categories, e.g. Effort; it occurs when any member occurs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Effort", "members": ["Frustration", "Repeat contact"]}]
        }
    )

    name: Name = Field(description="Unique among the category groups, ignoring case.")
    members: list[Name] = Field(
        max_length=MAX_GROUP_MEMBERS,
        description="Names of its categories, spelled exactly as in `categories`; at least one.",
    )


class ScoreRange(_CatalogModel):
    """A labelled band of a score: values in [min, max), the last band also holds its max."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"label": "Average", "min": 3.3, "max": 6.6}]}
    )

    label: Name = Field(description="Unique within the score, ignoring case.")
    min: Number
    max: Number

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min >= self.max:
            problems = _Problems()
            problems.add(
                ("max",),
                "range_empty",
                f"Must be greater than the range's min ({_number(self.min)}).",
                self.max,
            )
            problems.raise_if_any(type(self).__name__)
        return self


class Score(_CatalogModel):
    """An automated score such as TEI or AIS, its scale and, optionally, its labelled bands."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "TEI",
                    "min": 0,
                    "max": 10,
                    "ranges": [
                        {"label": "Low", "min": 0, "max": 3.3},
                        {"label": "Average", "min": 3.3, "max": 6.6},
                        {"label": "High", "min": 6.6, "max": 10},
                    ],
                }
            ]
        }
    )

    name: Name = Field(description="Unique among the scores, ignoring case.")
    min: Number = Field(description="The lowest value of the scale.")
    max: Number = Field(description="The highest value of the scale; greater than min.")
    ranges: list[ScoreRange] = Field(
        default_factory=list,
        max_length=MAX_SCORE_RANGES,
        description=(
            "Optional labelled bands, sorted, contiguous, from the score's min to its max. "
            "Needed for the `value` data-field format."
        ),
    )

    @model_validator(mode="after")
    def _check_scale_and_ranges(self) -> Self:
        problems = _Problems()
        if self.min >= self.max:
            problems.add(
                ("max",),
                "score_empty",
                f"Must be greater than the score's min ({_number(self.min)}).",
                self.max,
            )
        _check_ranges(self, problems)
        problems.raise_if_any(type(self).__name__)
        return self


def _check_ranges(score: Score, problems: _Problems) -> None:
    ranges = score.ranges
    if not ranges:
        return
    first_index: dict[str, int] = {}
    for index, band in enumerate(ranges):
        first = first_index.setdefault(band.label.casefold(), index)
        if first != index:
            problems.add(
                ("ranges", index, "label"),
                "duplicate_label",
                f"{_quote(band.label)} is already the label of ranges/{first} "
                "(labels are unique within a score, ignoring case).",
                band.label,
            )
    if any(later.min < earlier.min for earlier, later in pairwise(ranges)):
        # Boundary checks on an unsorted list would only repeat this one mistake.
        problems.add(
            ("ranges",),
            "ranges_not_sorted",
            "Ranges must be sorted by min, lowest first.",
            [band.model_dump() for band in ranges],
        )
        return
    if ranges[0].min != score.min:
        problems.add(
            ("ranges", 0, "min"),
            "ranges_start",
            f"The first range must start at the score's min ({_number(score.min)}).",
            ranges[0].min,
        )
    for index in range(1, len(ranges)):
        previous_max, start = ranges[index - 1].max, ranges[index].min
        if start != previous_max:
            what = "leaves a gap after" if start > previous_max else "overlaps"
            problems.add(
                ("ranges", index, "min"),
                "ranges_not_contiguous",
                f"This range {what} the previous one: it must start where that one ends "
                f"({_number(previous_max)}).",
                start,
            )
    if ranges[-1].max != score.max:
        problems.add(
            ("ranges", len(ranges) - 1, "max"),
            "ranges_end",
            f"The last range must end at the score's max ({_number(score.max)}).",
            ranges[-1].max,
        )


class CustomMetadataField(_CatalogModel):
    """A custom metadata field the platform attaches to interactions."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Product line"}]})

    name: Name = Field(description="Unique among the custom metadata fields, ignoring case.")


class CallGroupType(_CatalogModel):
    """A kind of call group (team), e.g. Team or Site."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Team"}]})

    name: Name = Field(description="Unique among the call-group types, ignoring case.")


_NAMED_LISTS = (
    "categories",
    "category_groups",
    "scores",
    "custom_metadata_fields",
    "call_group_types",
)

_DOCUMENT_EXAMPLE: dict[str, Any] = {
    "categories": [
        {"name": "Frustration", "description": "The customer expresses frustration."},
        {"name": "Repeat contact"},
        {"name": "Cancellation"},
    ],
    "category_groups": [{"name": "Effort", "members": ["Frustration", "Repeat contact"]}],
    "scores": [
        {
            "name": "TEI",
            "min": 0,
            "max": 10,
            "ranges": [
                {"label": "Low", "min": 0, "max": 3.3},
                {"label": "Average", "min": 3.3, "max": 6.6},
                {"label": "High", "min": 6.6, "max": 10},
            ],
        },
        {"name": "AIS", "min": -100, "max": 100},
    ],
    "custom_metadata_fields": [{"name": "Product line"}],
    "call_group_types": [{"name": "Team"}],
}


class CatalogDocument(_CatalogModel):
    """What an organization's interactions can carry; data fields and triggers refer to it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DOCUMENT_EXAMPLE]})

    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    category_groups: list[CategoryGroup] = Field(
        default_factory=list, max_length=MAX_CATEGORY_GROUPS
    )
    scores: list[Score] = Field(default_factory=list, max_length=MAX_SCORES)
    custom_metadata_fields: list[CustomMetadataField] = Field(
        default_factory=list, max_length=MAX_CUSTOM_METADATA_FIELDS
    )
    call_group_types: list[CallGroupType] = Field(
        default_factory=list, max_length=MAX_CALL_GROUP_TYPES
    )

    @model_validator(mode="wrap")
    @classmethod
    def _check_across_lists(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        problems = _Problems()
        try:
            document = handler(data)
        except ValidationError as exc:
            # Check what can be checked of the raw input too, so one answer lists everything.
            problems.extend(exc)
            if isinstance(data, dict):
                _check_references(data, problems)
            raise problems.error(cls.__name__) from None
        _check_references(document, problems)
        problems.raise_if_any(cls.__name__)
        return document

    def counts(self) -> dict[str, int]:
        """How many items each list holds (for audit details and logs)."""
        return {key: len(getattr(self, key)) for key in _NAMED_LISTS}

    def category_names(self) -> list[str]:
        return [category.name for category in self.categories]

    def category_group(self, name: str) -> CategoryGroup | None:
        """The group named exactly `name`, if any."""
        return next((group for group in self.category_groups if group.name == name), None)

    def score(self, name: str) -> Score | None:
        """The score named exactly `name`, if any."""
        return next((score for score in self.scores if score.name == name), None)


def _get(source: Any, key: str) -> Any:
    """A member of a validated model or of raw (possibly invalid) input alike."""
    return source.get(key) if isinstance(source, dict) else getattr(source, key, None)


def _names(items: Any) -> Iterator[tuple[int, str]]:
    """(index, stripped name) of each item that has a string name."""
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        name = _get(item, "name")
        if isinstance(name, str) and name.strip():
            yield index, name.strip()


def _check_unique(problems: _Problems, key: str, names: Iterable[tuple[int, str]]) -> None:
    first_index: dict[str, int] = {}
    for index, name in names:
        first = first_index.setdefault(name.casefold(), index)
        if first != index:
            problems.add(
                (key, index, "name"),
                "duplicate_name",
                f"{_quote(name)} is already the name of {key}/{first} "
                "(names are unique within a list, ignoring case).",
                name,
            )


def _check_references(source: Any, problems: _Problems) -> None:
    for key in _NAMED_LISTS:
        _check_unique(problems, key, _names(_get(source, key)))
    categories = {name: name.casefold() for _, name in _names(_get(source, "categories"))}
    by_folded_name = {folded: name for name, folded in categories.items()}
    groups = _get(source, "category_groups")
    for index, group in enumerate(groups if isinstance(groups, list) else []):
        members = _get(group, "members")
        if isinstance(members, list):
            location = ("category_groups", index, "members")
            _check_members(problems, location, members, categories.keys(), by_folded_name)


def _check_members(
    problems: _Problems,
    location: Location,
    members: list[Any],
    categories: Collection[str],
    by_folded_name: Mapping[str, str],
) -> None:
    if not members:
        problems.add(
            location, "empty_group", "A category group needs at least one member category.", []
        )
    first_index: dict[str, int] = {}
    for index, member in enumerate(members):
        # Members that are not valid names have their own error already.
        if not isinstance(member, str) or _name_problem(member.strip()):
            continue
        name = member.strip()
        first = first_index.setdefault(name.casefold(), index)
        if first != index:
            problems.add(
                (*location, index),
                "duplicate_member",
                f"{_quote(name)} is listed twice (also at members/{first}).",
                member,
            )
        elif name not in categories:
            near = by_folded_name.get(name.casefold())
            hint = f" Did you mean {_quote(near)}?" if near else ""
            problems.add(
                (*location, index),
                "unknown_category",
                f"{_quote(name)} is not a category of this catalogue.{hint}",
                member,
            )


class Catalog(CatalogDocument):
    """The organization's catalogue as stored, with the version its ETag names."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_DOCUMENT_EXAMPLE, "version": 3, "updated_at": "2026-11-26T17:02:03Z"}]
        }
    )

    version: int = Field(
        description=(
            "0 before the first change, then +1 on every change; the ETag is "
            '`"catalog-{version}"`. Read-only: not accepted by PUT.'
        )
    )
    updated_at: datetime | None = Field(
        description="When the catalogue last changed; null before the first change."
    )
