"""validate_selection: the format matrix, catalogue names, duplicates and field names."""

import itertools

import pytest

from service.catalog.schemas import CatalogDocument
from service.data_fields.schemas import (
    CUSTOMER_DETAIL_KEYS,
    INTERACTION_DETAIL_KEYS,
    DataField,
    Format,
    Placement,
    Source,
)
from service.data_fields.validation import ALLOWED_FORMATS, allowed_formats, validate_selection
from service.errors import FieldError
from tests.data_fields.factories import CATALOG, CATALOG_DOCUMENT, VALID_KEYS, field

# Design §4, "allowed for", written out independently of the code under test.
SPEC_SOURCES: dict[str, set[str]] = {
    "text": {"interaction_detail", "customer_detail", "custom_metadata", "call_group_type"},
    "boolean": {"category", "category_group"},
    "numeric": {"category", "category_group"},
    "group": {"category_group"},
    "multi_value_text_set": {"category_group", "call_group_type"},
    "value": {"score"},
    "range": {"score"},
}
EMBEDDED_ONLY = {"multi_value_text_set"}
FORMAT_ORDER = ["text", "boolean", "numeric", "group", "multi_value_text_set", "value", "range"]


def spec_allowed(source: str, placement: str) -> list[str]:
    return [
        fmt
        for fmt in FORMAT_ORDER
        if source in SPEC_SOURCES[fmt] and not (placement == "question" and fmt in EMBEDDED_ONLY)
    ]


def errors_of(*fields: DataField, catalog: CatalogDocument = CATALOG) -> list[FieldError]:
    return validate_selection(fields, catalog)


class TestFormatMatrix:
    @pytest.mark.parametrize(
        ("source", "fmt", "placement"),
        list(itertools.product(list(Source), list(Format), list(Placement))),
        ids=lambda value: str(value),
    )
    def test_every_combination(self, source: Source, fmt: Format, placement: Placement) -> None:
        subject = field(source.value, VALID_KEYS[source.value], placement.value, fmt.value)
        errors = errors_of(subject)
        allowed = spec_allowed(source.value, placement.value)
        if fmt.value in allowed:
            assert errors == []
            return
        assert len(errors) == 1, errors
        error = errors[0]
        assert error.pointer == "/body/fields/0/format"
        assert error.detail.startswith(f"fields[0] ({source.value} {VALID_KEYS[source.value]}): ")
        assert f"format {fmt.value!r}" in error.detail
        assert error.detail.endswith(f"allowed: {', '.join(allowed)}")

    def test_allowed_formats_is_the_design_table(self) -> None:
        for source in Source:
            expected = {fmt for fmt, sources in SPEC_SOURCES.items() if source.value in sources}
            assert {fmt.value for fmt in ALLOWED_FORMATS[source]} == expected
        assert allowed_formats(Source.CATEGORY_GROUP, Placement.QUESTION) == [
            Format.BOOLEAN,
            Format.NUMERIC,
            Format.GROUP,
        ]

    def test_the_message_names_the_field_and_the_allowed_formats(self) -> None:
        fields = [
            field("interaction_detail", "date"),
            field("interaction_detail", "time"),
            field("customer_detail", "name"),
            field("score", "TEI", "question", "boolean"),
        ]
        assert errors_of(*fields) == [
            FieldError(
                pointer="/body/fields/3/format",
                detail=(
                    "fields[3] (score TEI): format 'boolean' is not allowed for a score; "
                    "allowed: value, range"
                ),
            )
        ]

    def test_a_multi_value_text_set_is_embedded_data_only(self) -> None:
        [error] = errors_of(field("category_group", "Effort", "question", "multi_value_text_set"))
        assert error.detail == (
            "fields[0] (category_group Effort): format 'multi_value_text_set' is only allowed "
            "as embedded_data; as a question, allowed: boolean, numeric, group"
        )

    @pytest.mark.parametrize("placement", ["question", "embedded_data"])
    def test_value_needs_labelled_ranges(self, placement: str) -> None:
        assert errors_of(field("score", "TEI", placement, "value")) == []
        [error] = errors_of(field("score", "AIS", placement, "value"))
        assert error.pointer == "/body/fields/0/format"
        assert error.detail == (
            "fields[0] (score AIS): format 'value' needs labelled ranges, and score \"AIS\" has "
            "none in the catalogue; allowed: range"
        )


class TestKeys:
    @pytest.mark.parametrize("key", INTERACTION_DETAIL_KEYS)
    def test_every_interaction_detail(self, key: str) -> None:
        assert errors_of(field("interaction_detail", key)) == []

    @pytest.mark.parametrize("key", CUSTOMER_DETAIL_KEYS)
    def test_every_customer_detail(self, key: str) -> None:
        assert errors_of(field("customer_detail", key)) == []

    def test_unknown_detail_keys_list_the_allowed_ones(self) -> None:
        [error] = errors_of(field("customer_detail", "address"))
        assert error.pointer == "/body/fields/0/key"
        assert error.detail == (
            'fields[0] (customer_detail address): unknown key "address"; '
            "allowed: name, phone, customer_id, email"
        )
        [error] = errors_of(field("interaction_detail", "Date"))
        assert 'unknown key "Date" (did you mean "date"?)' in error.detail
        assert "allowed: date, time, started_at" in error.detail

    @pytest.mark.parametrize(
        ("source", "fmt", "noun"),
        [
            ("category", "boolean", "a category"),
            ("category_group", "boolean", "a category group"),
            ("score", "range", "a score"),
            ("custom_metadata", "text", "a custom metadata field"),
            ("call_group_type", "text", "a call-group type"),
        ],
    )
    def test_names_must_be_in_the_catalogue(self, source: str, fmt: str, noun: str) -> None:
        [error] = errors_of(field(source, "Nope", "question", fmt))
        assert error.pointer == "/body/fields/0/key"
        assert error.detail == f'fields[0] ({source} Nope): "Nope" is not {noun} of the catalogue'

    def test_names_are_exact_with_a_hint_for_case(self) -> None:
        [error] = errors_of(field("category", "frustration", "question", "boolean"))
        assert error.detail.endswith(
            '"frustration" is not a category of the catalogue (did you mean "Frustration"?)'
        )

    def test_an_empty_catalogue_refuses_every_name(self) -> None:
        empty = CatalogDocument()
        fields = [
            field(source, key, fmt=spec_allowed(source, "embedded_data")[0])
            for source, key in VALID_KEYS.items()
        ]
        pointers = [error.pointer for error in errors_of(*fields, catalog=empty)]
        assert pointers == [f"/body/fields/{index}/key" for index in range(2, 7)]

    def test_an_unknown_key_and_a_bad_format_are_both_reported(self) -> None:
        errors = errors_of(field("score", "Nope", "question", "text"))
        assert [error.pointer for error in errors] == [
            "/body/fields/0/key",
            "/body/fields/0/format",
        ]


class TestDuplicates:
    def test_the_same_field_twice(self) -> None:
        first = field("score", "TEI", "question", "range")
        second = field("score", "TEI", "question", "range", label="Effort again")
        [error] = errors_of(first, second)
        assert error.pointer == "/body/fields/1"
        assert error.detail == (
            "fields[1] (score TEI): the same field as fields[0] "
            "(same source, key, format and placement)"
        )

    def test_other_formats_or_placements_are_other_fields(self) -> None:
        fields = [
            field("score", "TEI", placement, fmt)
            for placement in ("question", "embedded_data")
            for fmt in ("value", "range")
        ]
        fields += [
            field("category_group", "Effort", "embedded_data", fmt)
            for fmt in ("boolean", "numeric", "group", "multi_value_text_set")
        ]
        assert errors_of(*fields) == []


class TestEmbeddedFieldNames:
    def test_two_fields_may_not_fill_one_name(self) -> None:
        first = field("score", "TEI", fmt="range", label="Effort")
        second = field("score", "AIS", fmt="range", label="effort")
        [error] = errors_of(first, second)
        assert error.pointer == "/body/fields/1/label"
        assert error.detail == (
            'fields[1] (score AIS): embedded-data field name "effort" is already filled by '
            "fields[0] (names compare ignoring case); give one of them another label"
        )

    def test_a_label_may_not_take_a_default_name(self) -> None:
        first = field("score", "TEI", fmt="range")  # named "TEI"
        second = field("score", "AIS", fmt="range", label="TEI")
        [error] = errors_of(first, second)
        assert error.pointer == "/body/fields/1/label"

    def test_a_category_and_a_group_of_one_name_collide_by_default(self) -> None:
        document = {
            **CATALOG_DOCUMENT,
            "category_groups": [
                *CATALOG_DOCUMENT["category_groups"],
                {"name": "Escalation", "members": ["Escalation"]},
            ],
        }
        catalog = CatalogDocument.model_validate(document)
        fields = [
            field("category", "Escalation", fmt="boolean"),
            field("category_group", "Escalation", fmt="boolean"),
        ]
        [error] = errors_of(*fields, catalog=catalog)
        assert error.pointer == "/body/fields/1/key"
        assert error.detail.startswith(
            "fields[1] (category_group Escalation): the default embedded-data field name "
            '"Escalation" is already filled by fields[0]'
        )
        fields[1] = field("category_group", "Escalation", fmt="boolean", label="Escalation group")
        assert errors_of(*fields, catalog=catalog) == []

    def test_question_texts_may_repeat(self) -> None:
        fields = [
            field("score", "TEI", "question", "range", label="Score"),
            field("score", "AIS", "question", "range", label="Score"),
        ]
        assert errors_of(*fields) == []

    @pytest.mark.parametrize(
        ("label", "why"),
        [
            ("creovai_trigger", "reserved: names starting with 'creovai_' are the connector's"),
            ("CREOVAI_INTERACTION_ID", "reserved: names starting with 'creovai_'"),
            ("creovai_region", "reserved: names starting with 'creovai_'"),
            ("startDate", "is a response field of Qualtrics"),
            ("Duration", "is a response field of Qualtrics"),
            ("userlanguage", "is a response field of Qualtrics"),
            ("RecipientEmail", "is a response field of Qualtrics"),
            ("QID12", "looks like a question id"),
            ("qid3_TEXT", "looks like a question id"),
            ("Q_Language", "names starting with 'Q_' are Qualtrics' own"),
        ],
    )
    def test_reserved_names(self, label: str, why: str) -> None:
        [error] = errors_of(field("custom_metadata", "region", label=label))
        assert error.pointer == "/body/fields/0/label"
        assert error.detail.startswith(
            f'fields[0] (custom_metadata region): embedded-data field name "{label}" '
        )
        assert why in error.detail

    def test_a_reserved_default_name_points_at_the_key(self) -> None:
        catalog = CatalogDocument.model_validate(
            {**CATALOG_DOCUMENT, "custom_metadata_fields": [{"name": "duration"}]}
        )
        [error] = errors_of(field("custom_metadata", "duration"), catalog=catalog)
        assert error.pointer == "/body/fields/0/key"
        assert 'the default embedded-data field name "duration" is a response field' in (
            error.detail
        )
        assert (
            errors_of(field("custom_metadata", "duration", label="Duration (CRM)"), catalog=catalog)
            == []
        )
        # As a question, the name is only text.
        assert errors_of(field("custom_metadata", "duration", "question"), catalog=catalog) == []

    def test_a_long_default_name_needs_a_label(self) -> None:
        long_name = "C" * 150
        catalog = CatalogDocument.model_validate(
            {
                **CATALOG_DOCUMENT,
                "categories": [*CATALOG_DOCUMENT["categories"], {"name": long_name}],
            }
        )
        [error] = errors_of(field("category", long_name, fmt="boolean"), catalog=catalog)
        assert error.pointer == "/body/fields/0/key"
        assert "longer than 100 characters; give the field a shorter label" in error.detail
        labelled = field("category", long_name, fmt="boolean", label="Long one")
        assert errors_of(labelled, catalog=catalog) == []
        assert errors_of(field("category", long_name, "question", "boolean"), catalog=catalog) == []

    def test_the_detail_defaults_do_not_collide(self) -> None:
        fields = [field("interaction_detail", key) for key in INTERACTION_DETAIL_KEYS]
        fields += [field("customer_detail", key) for key in CUSTOMER_DETAIL_KEYS]
        assert errors_of(*fields) == []


class TestReport:
    def test_every_problem_in_field_order(self) -> None:
        fields = [
            field("score", "TEI", "question", "boolean"),
            field("category", "Nope", "question", "boolean"),
            field("score", "TEI", "question", "value"),
            field("score", "TEI", "question", "value"),
        ]
        pointers = [error.pointer for error in errors_of(*fields)]
        assert pointers == ["/body/fields/0/format", "/body/fields/1/key", "/body/fields/3"]

    def test_the_pointer_prefix(self) -> None:
        [error] = validate_selection(
            [field("customer_detail", "address")], CATALOG, pointer_prefix="/fields"
        )
        assert error.pointer == "/fields/0/key"

    def test_a_valid_selection(self) -> None:
        fields = [
            field(source, key, placement, fmt)
            for source, key in VALID_KEYS.items()
            for placement in ("question", "embedded_data")
            for fmt in spec_allowed(source, placement)
        ]
        assert errors_of(*fields) == []
