"""The shape of data fields and selections, before any catalogue is involved."""

from typing import Any

import pytest
from pydantic import ValidationError

from service.data_fields.schemas import (
    CUSTOMER_DETAIL_KEYS,
    DATA_FIELD_EXAMPLES,
    INTERACTION_DETAIL_KEYS,
    DataField,
    DataFieldSelection,
    EncodedField,
    Format,
    Placement,
    Source,
)

BASE: dict[str, Any] = {"source": "score", "key": "TEI", "placement": "question", "format": "range"}


class TestDataField:
    def test_the_examples_are_valid(self) -> None:
        for example in DATA_FIELD_EXAMPLES:
            DataField.model_validate(example)
        DataFieldSelection.model_validate({"fields": DATA_FIELD_EXAMPLES})

    def test_the_enums_are_the_designs(self) -> None:
        assert [source.value for source in Source] == [
            "interaction_detail",
            "customer_detail",
            "score",
            "category",
            "category_group",
            "custom_metadata",
            "call_group_type",
        ]
        assert [placement.value for placement in Placement] == ["question", "embedded_data"]
        assert [fmt.value for fmt in Format] == [
            "text",
            "boolean",
            "numeric",
            "group",
            "multi_value_text_set",
            "value",
            "range",
        ]

    def test_the_detail_keys_are_the_designs(self) -> None:
        assert INTERACTION_DETAIL_KEYS == (
            "date",
            "time",
            "started_at",
            "ended_at",
            "duration",
            "talk_time",
            "agent",
            "agent_id",
            "direction",
            "channel",
            "call_groups",
            "language",
            "country",
            "number_dialed",
            "interaction_id",
            "link",
        )
        assert CUSTOMER_DETAIL_KEYS == ("name", "phone", "customer_id", "email")

    def test_unknown_members_are_refused(self) -> None:
        with pytest.raises(ValidationError) as exc:
            DataField.model_validate({**BASE, "colour": "red"})
        assert exc.value.errors()[0]["type"] == "extra_forbidden"

    @pytest.mark.parametrize(
        ("member", "value"),
        [("source", "scores"), ("placement", "survey"), ("format", "percent"), ("key", "")],
    )
    def test_bad_members_are_refused(self, member: str, value: str) -> None:
        with pytest.raises(ValidationError) as exc:
            DataField.model_validate({**BASE, member: value})
        assert exc.value.errors()[0]["loc"] == (member,)

    def test_key_and_label_are_trimmed(self) -> None:
        field = DataField.model_validate({**BASE, "key": "  TEI ", "label": "  Effort  "})
        assert (field.key, field.label) == ("TEI", "Effort")

    @pytest.mark.parametrize("label", ["", "   ", None])
    def test_an_empty_label_is_none(self, label: str | None) -> None:
        assert DataField.model_validate({**BASE, "label": label}).label is None

    def test_a_label_has_at_most_100_characters(self) -> None:
        assert DataField.model_validate({**BASE, "label": "x" * 100}).label == "x" * 100
        with pytest.raises(ValidationError) as exc:
            DataField.model_validate({**BASE, "label": "x" * 101})
        assert exc.value.errors()[0]["loc"] == ("label",)

    def test_a_key_has_at_most_200_characters(self) -> None:
        DataField.model_validate({**BASE, "key": "k" * 200})
        with pytest.raises(ValidationError):
            DataField.model_validate({**BASE, "key": "k" * 201})

    @pytest.mark.parametrize("text", ["a\nb", "a\tb", "a\x00b", "a\u2028b"])
    def test_control_characters_are_refused(self, text: str) -> None:
        with pytest.raises(ValidationError) as exc:
            DataField.model_validate({**BASE, "label": text})
        assert "control characters" in exc.value.errors()[0]["msg"]
        with pytest.raises(ValidationError):
            DataField.model_validate({**BASE, "key": text})

    def test_fields_are_frozen_and_hashable(self) -> None:
        field = DataField.model_validate(BASE)
        with pytest.raises(ValidationError):
            field.key = "AIS"  # type: ignore[misc]
        assert hash(field) == hash(DataField.model_validate(BASE))

    def test_describe_names_source_and_key(self) -> None:
        assert DataField.model_validate(BASE).describe() == "score TEI"


class TestDataFieldSelection:
    def test_one_to_a_hundred_fields(self) -> None:
        DataFieldSelection.model_validate({"fields": [BASE]})
        DataFieldSelection.model_validate({"fields": [BASE] * 100})
        for count in (0, 101):
            with pytest.raises(ValidationError) as exc:
                DataFieldSelection.model_validate({"fields": [BASE] * count})
            assert exc.value.errors()[0]["loc"] == ("fields",)

    def test_unknown_members_are_refused(self) -> None:
        with pytest.raises(ValidationError):
            DataFieldSelection.model_validate({"fields": [BASE], "extra": 1})

    def test_schemas_carry_examples(self) -> None:
        for model in (DataField, DataFieldSelection, EncodedField):
            assert model.model_json_schema()["examples"]
