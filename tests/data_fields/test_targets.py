"""What each field looks like in Qualtrics: identities, question definitions, embedded fields."""

from typing import Any

import pytest

from service.catalog.schemas import CatalogDocument
from service.data_fields.schemas import CUSTOMER_DETAIL_KEYS, INTERACTION_DETAIL_KEYS
from service.data_fields.targets import (
    RESERVED_EMBEDDED_FIELDS,
    EmbeddedFieldTarget,
    QuestionTarget,
    build_targets,
    data_export_tag,
    embedded_field_name,
    question_target,
    stable_choices,
    target_key,
    variable_type,
)
from tests.data_fields.factories import CATALOG, CATALOG_DOCUMENT, VALID_KEYS, field

NO_VALIDATION = {"Settings": {"ForceResponse": "OFF", "ForceResponseType": "ON", "Type": "None"}}


def number_validation(maximum: str, decimals: str) -> dict[str, Any]:
    return {
        "Settings": {
            "ForceResponse": "OFF",
            "ForceResponseType": "ON",
            "Type": "ContentType",
            "ContentType": "ValidNumber",
            "ValidNumber": {"Min": "0", "Max": maximum, "NumDecimals": decimals},
        }
    }


def question(source: str, key: str, fmt: str, **extra: Any) -> QuestionTarget:
    [target, *_reserved] = build_targets([field(source, key, "question", fmt, **extra)], CATALOG)
    assert isinstance(target, QuestionTarget)
    return target


class TestIdentity:
    def test_a_question_is_what_it_measures(self) -> None:
        plain = field("score", "TEI", "question", "range")
        labelled = field("score", "TEI", "question", "range", label="Customer effort")
        assert target_key(plain) == target_key(labelled) == "score:TEI:range:question"
        assert target_key(field("score", "TEI", "question", "value")) == "score:TEI:value:question"

    def test_an_embedded_field_is_its_name(self) -> None:
        assert target_key(field("score", "TEI", fmt="range")) == "embedded_data:TEI"
        labelled = field("score", "TEI", fmt="range", label="Effort index")
        assert target_key(labelled) == "embedded_data:Effort index"

    @pytest.mark.parametrize(
        ("source", "key", "fmt", "name"),
        [
            ("score", "TEI", "range", "TEI"),
            ("score", "TEI", "value", "TEI_value"),
            ("category", "Frustration", "boolean", "Frustration"),
            ("category", "Frustration", "numeric", "Frustration_numeric"),
            ("category_group", "Effort", "boolean", "Effort"),
            ("category_group", "Effort", "numeric", "Effort_numeric"),
            ("category_group", "Effort", "group", "Effort_group"),
            ("category_group", "Effort", "multi_value_text_set", "Effort_multi_value_text_set"),
            ("custom_metadata", "Product line", "text", "Product line"),
            ("call_group_type", "Team", "text", "Team"),
            ("call_group_type", "Team", "multi_value_text_set", "Team_multi_value_text_set"),
            ("interaction_detail", "date", "text", "interaction_date"),
            ("interaction_detail", "duration", "text", "duration_seconds"),
            ("interaction_detail", "agent", "text", "agent_name"),
            ("interaction_detail", "link", "text", "interaction_link"),
            ("customer_detail", "email", "text", "customer_email"),
            ("customer_detail", "customer_id", "text", "customer_id"),
        ],
    )
    def test_default_field_names(self, source: str, key: str, fmt: str, name: str) -> None:
        assert embedded_field_name(field(source, key, fmt=fmt)) == name


class TestEmbeddedFields:
    @pytest.mark.parametrize("key", INTERACTION_DETAIL_KEYS)
    def test_interaction_detail_types(self, key: str) -> None:
        # Design §4: String for ids, links, phone, email, names; Scale for durations; Date for
        # date; Nominal for the rest.
        expected = {
            "date": "Date",
            "duration": "Scale",
            "talk_time": "Scale",
            "agent": "String",
            "agent_id": "String",
            "number_dialed": "String",
            "interaction_id": "String",
            "link": "String",
        }.get(key, "Nominal")
        assert variable_type(field("interaction_detail", key)) == expected

    @pytest.mark.parametrize("key", CUSTOMER_DETAIL_KEYS)
    def test_customer_details_are_strings(self, key: str) -> None:
        assert variable_type(field("customer_detail", key)) == "String"

    @pytest.mark.parametrize(
        ("source", "fmt", "expected"),
        [
            ("custom_metadata", "text", "Nominal"),
            ("call_group_type", "text", "Nominal"),
            ("call_group_type", "multi_value_text_set", "MultiValueNominal"),
            ("category", "boolean", "Nominal"),
            ("category", "numeric", "Scale"),
            ("category_group", "boolean", "Nominal"),
            ("category_group", "numeric", "Scale"),
            ("category_group", "group", "Nominal"),
            ("category_group", "multi_value_text_set", "MultiValueNominal"),
            ("score", "value", "Nominal"),
            ("score", "range", "Scale"),
        ],
    )
    def test_format_types(self, source: str, fmt: str, expected: str) -> None:
        assert variable_type(field(source, VALID_KEYS[source], fmt=fmt)) == expected

    def test_the_flow_item(self) -> None:
        [target, *_] = build_targets([field("score", "TEI", fmt="range")], CATALOG)
        assert isinstance(target, EmbeddedFieldTarget)
        assert target.flow_item() == {
            "Description": "TEI",
            "Type": "Custom",
            "Field": "TEI",
            "VariableType": "Scale",
            "DataVisibility": [],
            "AnalyzeText": False,
        }
        assert target.field_map_entry() == {
            "kind": "embedded_data",
            "field": "TEI",
            "variable_type": "Scale",
        }

    def test_the_reserved_fields_close_every_list(self) -> None:
        assert [(t.field_name, t.variable_type.value) for t in RESERVED_EMBEDDED_FIELDS] == [
            ("creovai_interaction_id", "String"),
            ("creovai_trigger", "Nominal"),
        ]
        fields = [field("score", "TEI", fmt="range"), field("score", "AIS", "question", "range")]
        targets = build_targets(fields, CATALOG)
        assert targets[2:] == list(RESERVED_EMBEDDED_FIELDS)
        assert [target.target_key for target in targets[:2]] == [target_key(one) for one in fields]
        assert build_targets([], CATALOG) == list(RESERVED_EMBEDDED_FIELDS)


class TestQuestions:
    @pytest.mark.parametrize(
        "source", ["interaction_detail", "customer_detail", "custom_metadata", "call_group_type"]
    )
    def test_text_is_a_single_line_text_entry(self, source: str) -> None:
        target = question(source, VALID_KEYS[source], "text")
        assert (target.question_type, target.selector, target.choices) == ("TE", "SL", {})
        definition = target.definition
        assert definition["QuestionType"] == "TE"
        assert definition["Selector"] == "SL"
        assert "SubSelector" not in definition
        assert "Choices" not in definition
        assert definition["Validation"] == NO_VALIDATION

    def test_numeric_is_a_number_entry_of_0_or_1(self) -> None:
        definition = question("category", "Frustration", "numeric").definition
        assert (definition["QuestionType"], definition["Selector"]) == ("TE", "SL")
        assert definition["Validation"] == number_validation("1", "0")

    def test_range_is_a_number_entry_from_0_to_10_with_one_decimal(self) -> None:
        definition = question("score", "TEI", "range").definition
        assert (definition["QuestionType"], definition["Selector"]) == ("TE", "SL")
        assert definition["Validation"] == {
            "Settings": {
                "ForceResponse": "OFF",
                "ForceResponseType": "ON",
                "Type": "ContentType",
                "ContentType": "ValidNumber",
                "ValidNumber": {"Min": "0", "Max": "10", "NumDecimals": "1"},
            }
        }

    @pytest.mark.parametrize("source", ["category", "category_group"])
    def test_boolean_is_single_answer_yes_no(self, source: str) -> None:
        target = question(source, VALID_KEYS[source], "boolean")
        assert target.choices == {"Yes": "1", "No": "2"}
        definition = target.definition
        assert (definition["QuestionType"], definition["Selector"]) == ("MC", "SAVR")
        assert definition["SubSelector"] == "TX"
        assert definition["Choices"] == {"1": {"Display": "Yes"}, "2": {"Display": "No"}}
        assert definition["ChoiceOrder"] == ["1", "2"]
        assert definition["RecodeValues"] == {"1": "1", "2": "2"}

    def test_group_is_multiple_answer_in_catalogue_order(self) -> None:
        target = question("category_group", "Effort", "group")
        assert target.choices == {"Frustration": "1", "Repeat contact": "2", "Hold, long": "3"}
        definition = target.definition
        assert (definition["QuestionType"], definition["Selector"]) == ("MC", "MAVR")
        assert definition["SubSelector"] == "TX"
        assert definition["Choices"] == {
            "1": {"Display": "Frustration"},
            "2": {"Display": "Repeat contact"},
            "3": {"Display": "Hold, long"},
        }
        assert definition["ChoiceOrder"] == ["1", "2", "3"]

    def test_value_is_single_answer_of_the_band_labels(self) -> None:
        target = question("score", "TEI", "value")
        assert target.choices == {"Low": "1", "Average": "2", "High": "3"}
        assert (target.definition["QuestionType"], target.definition["Selector"]) == (
            "MC",
            "SAVR",
        )

    def test_the_common_members(self) -> None:
        definition = question("score", "TEI", "range").definition
        assert definition["QuestionText"] == "TEI (Creovai Effort Index) on a 0-10 scale"
        assert definition["QuestionDescription"] == definition["QuestionText"]
        assert definition["DataExportTag"] == "creovai_score_TEI_range"
        assert definition["Configuration"] == {"QuestionDescriptionOption": "UseText"}
        assert definition["Language"] == []

    @pytest.mark.parametrize(
        ("source", "key", "fmt", "text"),
        [
            ("category", "Frustration", "boolean", "Frustration occurred?"),
            ("category", "Frustration", "numeric", "Frustration occurred (1 = yes, 0 = no)"),
            ("category_group", "Effort", "group", "Effort: which categories occurred?"),
            ("score", "TEI", "value", "TEI (Creovai Effort Index)"),
            ("score", "AIS", "range", "AIS (Agent Impact Score) on a 0-10 scale"),
            ("score", "CSAT", "value", "CSAT"),
            ("interaction_detail", "link", "text", "Link to Creovai interaction"),
            ("customer_detail", "email", "text", "Customer email"),
            ("custom_metadata", "region", "text", "region"),
        ],
    )
    def test_default_texts(self, source: str, key: str, fmt: str, text: str) -> None:
        assert question(source, key, fmt).definition["QuestionText"] == text

    def test_a_label_is_the_text_as_plain_text(self) -> None:
        definition = question("score", "TEI", "range", label="Effort <TEI> & more").definition
        assert definition["QuestionText"] == "Effort &lt;TEI&gt; &amp; more"
        assert definition["QuestionDescription"] == "Effort <TEI> & more"

    def test_choice_labels_are_plain_text(self) -> None:
        catalog = CatalogDocument.model_validate(
            {
                **CATALOG_DOCUMENT,
                "categories": [{"name": "Q&A <1>"}],
                "category_groups": [{"name": "G", "members": ["Q&A <1>"]}],
            }
        )
        target = question_target(field("category_group", "G", "question", "group"), catalog)
        assert target.choices == {"Q&A <1>": "1"}
        assert target.definition["Choices"] == {"1": {"Display": "Q&amp;A &lt;1&gt;"}}

    def test_a_long_text_has_a_short_description(self) -> None:
        long_name = "C" * 150
        catalog = CatalogDocument.model_validate({"categories": [{"name": long_name}]})
        definition = question_target(
            field("category", long_name, "question", "boolean"), catalog
        ).definition
        assert definition["QuestionText"] == f"{long_name} occurred?"
        assert len(definition["QuestionDescription"]) == 100

    def test_a_question_needs_its_catalogue_entry(self) -> None:
        with pytest.raises(ValueError, match="no such category group"):
            build_targets([field("category_group", "Nope", "question", "group")], CATALOG)
        with pytest.raises(ValueError, match="no score with labelled ranges"):
            build_targets([field("score", "AIS", "question", "value")], CATALOG)
        with pytest.raises(ValueError, match="has no question"):
            build_targets(
                [field("category_group", "Effort", "question", "multi_value_text_set")], CATALOG
            )

    def test_field_map_entry(self) -> None:
        target = question("category", "Frustration", "boolean")
        assert target.field_map_entry("QID7") == {
            "kind": "question",
            "question_id": "QID7",
            "choices": {"Yes": "1", "No": "2"},
        }


class TestExportTags:
    def test_plain_keys_are_readable(self) -> None:
        assert data_export_tag(field("category", "Frustration", "question", "boolean")) == (
            "creovai_category_Frustration_boolean"
        )
        assert data_export_tag(field("category_group", "Frustration", "question", "boolean")) == (
            "creovai_group_Frustration_boolean"
        )

    def test_other_keys_get_a_hash_and_stay_unique(self) -> None:
        keys = [
            "Repeat contact",
            "Repeat_contact",
            "Repeat-contact",
            "Répéter",
            "R" * 200,
            "R" * 199 + "S",
        ]
        tags = [data_export_tag(field("category", key, "question", "boolean")) for key in keys]
        assert len(set(tags)) == len(tags)
        assert all(len(tag) <= 100 for tag in tags)
        assert tags[1] == "creovai_category_Repeat_contact_boolean"
        assert tags[0].startswith("creovai_category_Repeat_contact_")
        assert tags[0].endswith("_boolean")

    def test_a_label_does_not_change_the_tag(self) -> None:
        plain = field("score", "TEI", "question", "range")
        assert data_export_tag(plain) == data_export_tag(plain.model_copy(update={"label": "X"}))


class TestStableChoices:
    def test_first_sync_numbers_in_order(self) -> None:
        assert stable_choices(["a", "b", "c"], {}) == {"a": "1", "b": "2", "c": "3"}

    def test_ids_never_move(self) -> None:
        previous = {"Frustration": "1", "Repeat contact": "2", "Old member": "3"}
        choices = stable_choices(["New member", "Repeat contact", "Frustration"], previous)
        assert choices == {
            "New member": "4",
            "Repeat contact": "2",
            "Frustration": "1",
            "Old member": "3",  # retired, but its choice (and its data) stays
        }

    def test_build_targets_keeps_the_synced_ids(self) -> None:
        group_question = field("category_group", "Effort", "question", "group")
        key = target_key(group_question)
        field_map = {
            key: {
                "kind": "question",
                "question_id": "QID4",
                "choices": {"Repeat contact": "1", "Gone": "2", "Frustration": "5"},
            }
        }
        [target, *_] = build_targets([group_question], CATALOG, field_map=field_map)
        assert isinstance(target, QuestionTarget)
        assert target.choices == {
            "Frustration": "5",
            "Repeat contact": "1",
            "Hold, long": "6",
            "Gone": "2",
        }
        assert target.definition["ChoiceOrder"] == ["5", "1", "6", "2"]

    def test_malformed_previous_choices_are_ignored(self) -> None:
        value_question = field("score", "TEI", "question", "value")
        field_map = {target_key(value_question): {"kind": "question", "choices": ["x"]}}
        [target, *_] = build_targets([value_question], CATALOG, field_map=field_map)
        assert isinstance(target, QuestionTarget)
        assert target.choices == {"Low": "1", "Average": "2", "High": "3"}
