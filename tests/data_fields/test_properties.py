"""Properties of the encoder over generated catalogues, selections and interactions."""

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from itertools import pairwise
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.catalog.schemas import CatalogDocument, Score
from service.data_fields import values
from service.data_fields.encoding import METADATA_KEYS, compile_plan
from service.data_fields.schemas import (
    CUSTOMER_DETAIL_KEYS,
    INTERACTION_DETAIL_KEYS,
    DataField,
    Format,
    Placement,
    Source,
)
from service.data_fields.targets import RESERVED_EMBEDDED_FIELDS
from service.data_fields.validation import allowed_formats, validate_selection
from service.data_fields.values import day_text, range_encoder, utc_text, whole_seconds
from service.interactions.schemas import Interaction
from tests.data_fields.factories import APP_URL, synced_field_map

CATEGORIES = ["Frustration", "Repeat contact", "Hold, long", "Cancellation", "Escalation"]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=False, allow_infinity=False)
score_bounds = st.floats(min_value=-1e12, max_value=1e12)  # the catalogue's bound
names = (
    st.text(
        alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def scores(draw: st.DrawFn, name: str) -> dict[str, Any]:
    points = sorted(draw(st.lists(finite, min_size=2, max_size=6, unique=True)))
    ranges = [
        {"label": f"Band {index}", "min": low, "max": high}
        for index, (low, high) in enumerate(pairwise(points))
    ]
    return {"name": name, "min": points[0], "max": points[-1], "ranges": ranges}


@st.composite
def catalogs(draw: st.DrawFn) -> CatalogDocument:
    members = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))
    return CatalogDocument.model_validate(
        {
            "categories": [{"name": name} for name in CATEGORIES],
            "category_groups": [
                {"name": "Effort", "members": members},
                {"name": "Churn risk", "members": ["Cancellation"]},
            ],
            "scores": [draw(scores("TEI")), draw(scores("AIS"))],
            "custom_metadata_fields": [{"name": "region"}, {"name": "tier"}],
            "call_group_types": [{"name": "Team"}, {"name": "Site"}],
        }
    )


KEYS: dict[Source, list[str]] = {
    Source.INTERACTION_DETAIL: list(INTERACTION_DETAIL_KEYS),
    Source.CUSTOMER_DETAIL: list(CUSTOMER_DETAIL_KEYS),
    Source.SCORE: ["TEI", "AIS"],
    Source.CATEGORY: CATEGORIES,
    Source.CATEGORY_GROUP: ["Effort", "Churn risk"],
    Source.CUSTOM_METADATA: ["region", "tier"],
    Source.CALL_GROUP_TYPE: ["Team", "Site"],
}


@st.composite
def data_fields(draw: st.DrawFn) -> DataField:
    source = draw(st.sampled_from(list(Source)))
    placement = draw(st.sampled_from(list(Placement)))
    fmt = draw(st.sampled_from(allowed_formats(source, placement)))
    return DataField(
        source=source, key=draw(st.sampled_from(KEYS[source])), placement=placement, format=fmt
    )


any_fields = st.builds(
    DataField,
    source=st.sampled_from(list(Source)),
    key=st.sampled_from(sorted({key for keys in KEYS.values() for key in keys} | {"Nope"})),
    placement=st.sampled_from(list(Placement)),
    format=st.sampled_from(list(Format)),
    label=st.none() | st.sampled_from(["TEI", "tei", "Effort", "creovai_x", "QID1", "A label"]),
)


def valid_selection(fields: list[DataField], catalog: CatalogDocument) -> list[DataField]:
    """The fields that validate_selection accepts, in order (duplicates dropped)."""
    kept: list[DataField] = []
    for candidate in fields:
        if not validate_selection([*kept, candidate], catalog):
            kept.append(candidate)
    return kept


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Hypothesis takes naive bounds and attaches the offsets itself.
moments = st.datetimes(
    min_value=datetime(1990, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(2090, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    timezones=offsets,
)
maybe_text = st.none() | st.sampled_from(["", "  ", "x", " Alex, Jr. ", "a@b.c"])


@st.composite
def interactions(draw: st.DrawFn) -> Interaction:
    start = draw(moments)
    length = draw(st.none() | st.floats(min_value=0, max_value=86400))
    return Interaction.model_validate(
        {
            "id": draw(st.sampled_from(["call-1", "team a/call 2", "x"])),
            "channel": draw(st.sampled_from(["call", "chat"])),
            "started_at": start,
            "ended_at": None if length is None else start + timedelta(seconds=length),
            "duration_seconds": length,
            "talk_time_seconds": draw(st.none() | st.floats(min_value=0, max_value=86400)),
            "language": draw(st.none() | st.sampled_from(["eng", "deu", "xho"])),
            "country": draw(st.none() | st.just("GBR")),
            "number_dialed": draw(maybe_text),
            "agent": draw(
                st.none() | st.fixed_dictionaries({"id": maybe_text, "name": maybe_text})
            ),
            "customer": draw(
                st.none()
                | st.fixed_dictionaries(
                    {"id": maybe_text, "name": maybe_text, "phone": maybe_text, "email": maybe_text}
                )
            ),
            "call_groups": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": names, "type": st.none() | st.sampled_from(["Team", "Site"])}
                    ),
                    max_size=4,
                )
            ),
            "categories": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "name": st.sampled_from([*CATEGORIES, "Transfer"]),
                            "groups": st.lists(st.sampled_from(["Effort", "Churn risk"])),
                            "occurrences": st.integers(min_value=0, max_value=3),
                        }
                    ),
                    max_size=5,
                )
            ),
            "scores": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["TEI", "AIS"]), "value": finite}
                    ),
                    max_size=3,
                )
            ),
            "metadata": draw(
                st.dictionaries(
                    st.sampled_from(["region", "tier"]),
                    st.none() | st.booleans() | st.integers() | finite | maybe_text,
                )
            ),
            "url": draw(st.none() | st.just("https://app.creovai.com/i/1")),
        }
    )


def reference_range(value: float, score: Score) -> str:
    """The design's formula on the numbers as written, independently of the encoder."""
    low, high, number = (Decimal(repr(x)) for x in (score.min, score.max, value))
    with localcontext(Context(prec=1000)):
        scaled = min(max((number - low) * 10 / (high - low), Decimal(0)), Decimal(10))
        rounded = scaled.quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{abs(rounded):.1f}"  # never "-0.0"


def reference_band(value: float, score: Score) -> str:
    bands = score.ranges
    for band in bands:
        if band.min <= value < band.max:
            return band.label
    return bands[0].label if value < bands[0].min else bands[-1].label


def score_value(subject: Interaction, name: str) -> float | None:
    return subject.score(name)


setup = st.tuples(catalogs(), st.lists(data_fields(), min_size=1, max_size=25), interactions())


class TestEncoderProperties:
    @settings(max_examples=300)
    @given(setup)
    def test_every_value_is_well_formed(
        self, case: tuple[CatalogDocument, list[DataField], Interaction]
    ) -> None:
        catalog, candidates, subject = case
        fields = valid_selection(candidates, catalog)
        field_map = synced_field_map(fields, catalog)
        plan = compile_plan(fields, field_map, catalog)
        response = plan.encode(subject, trigger_name="T", creovai_app_url=APP_URL)
        values = response.values

        # Never None or an empty string (or an empty answer).
        for value in values.values():
            assert value is not None
            assert value != ""
            assert value != []

        # Every key is metadata, a question of the field map, or a declared embedded field.
        declared = {target.field_name for target in RESERVED_EMBEDDED_FIELDS}
        question_keys: set[str] = set()
        for entry in field_map.values():
            if entry["kind"] == "embedded_data":
                declared.add(entry["field"])
            else:
                question_keys |= {entry["question_id"], entry["question_id"] + "_TEXT"}
        assert set(values) <= METADATA_KEYS | question_keys | declared

        for encoded in response.fields:
            one = encoded.field
            value = encoded.value
            assert encoded.target is not None  # the survey is synced
            if value is None:
                assert encoded.reason
                continue
            if one.format is Format.RANGE:
                assert isinstance(value, str)
                assert re.fullmatch(r"10\.0|[0-9]\.[0-9]", value)
                score = catalog.score(one.key)
                raw = score_value(subject, one.key)
                assert score is not None
                assert raw is not None
                assert value == reference_range(raw, score)
            if one.format is Format.VALUE:
                score = catalog.score(one.key)
                raw = score_value(subject, one.key)
                assert score is not None
                assert raw is not None
                label = encoded.display if one.placement is Placement.QUESTION else value
                assert label in [band.label for band in score.ranges]
                assert label == reference_band(raw, score)
            if one.format is Format.GROUP and one.placement is Placement.QUESTION:
                assert isinstance(value, list)
                assert len(set(value)) == len(value)
                choices = field_map[encoded.target_key]["choices"]
                assert {str(choice) for choice in value} <= set(choices.values())
            if one.format in (Format.BOOLEAN, Format.NUMERIC):
                if one.format is Format.NUMERIC:
                    assert value in (0, 1)
                elif one.placement is Placement.QUESTION:
                    assert value in (1, 2)
                else:
                    assert value in ("Yes", "No")
            if isinstance(value, str) and one.format in (
                Format.GROUP,
                Format.MULTI_VALUE_TEXT_SET,
            ):
                assert all("," not in name and name for name in value.split(", "))

    @given(setup)
    def test_encoding_is_deterministic(
        self, case: tuple[CatalogDocument, list[DataField], Interaction]
    ) -> None:
        catalog, candidates, subject = case
        fields = valid_selection(candidates, catalog)
        field_map = synced_field_map(fields, catalog)
        first = compile_plan(fields, field_map, catalog)
        second = compile_plan(fields, field_map, catalog)
        arguments = {"trigger_name": "T", "creovai_app_url": APP_URL}
        values = first.values(subject, **arguments)
        assert first.values(subject, **arguments) == values
        assert second.values(subject, **arguments) == values
        assert list(second.values(subject, **arguments)) == list(values)  # same order too
        assert first.source == second.source


class TestHelperProperties:
    @given(moments)
    def test_utc_text_is_iso_8601_utc(self, moment: datetime) -> None:
        expected = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
        assert utc_text(moment) == expected

    @given(moments, st.sampled_from(["UTC", "Europe/London", "America/St_Johns", "Asia/Kolkata"]))
    def test_utc_text_in_any_kind_of_zone(self, moment: datetime, zone: str) -> None:
        expected = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
        parsed = Interaction.model_validate_json(
            f'{{"id": "x", "channel": "call", "started_at": "{moment.isoformat()}"}}'
        ).started_at  # the zone pydantic gives a parsed offset
        assert utc_text(parsed) == expected
        assert utc_text(moment.astimezone(ZoneInfo(zone))) == expected

    @given(st.lists(st.dates(), max_size=50))
    def test_day_text_is_the_iso_date(self, days: list[date]) -> None:
        # Remembering, and forgetting when full.
        with patch.object(values, "_MAX_DAY_TEXTS", 8), patch.dict(values._DAY_TEXTS, clear=True):
            for day in days:
                assert day_text(day) == day.isoformat()
                assert day_text(datetime.combine(day, time(23, 59), UTC)) == day.isoformat()
            assert len(values._DAY_TEXTS) <= 8

    @given(st.floats(min_value=0, max_value=864000))
    def test_whole_seconds_round_half_up(self, seconds: float) -> None:
        expected = int(Decimal(repr(seconds)).quantize(Decimal(1), ROUND_HALF_UP))
        assert whole_seconds(seconds) == expected

    @settings(max_examples=500)
    @given(st.data(), st.lists(score_bounds, min_size=2, max_size=2, unique=True).map(sorted))
    def test_range_matches_the_decimal_formula(
        self, data: st.DataObject, bounds: list[float]
    ) -> None:
        low, high = bounds
        score = Score(name="S", min=low, max=high)
        encode = range_encoder(low, high)
        # Values anywhere, and values right at the half tenths where floats mislead.
        tenth = Decimal(repr(high)) - Decimal(repr(low))
        half = data.draw(st.integers(min_value=0, max_value=99)) + Decimal("0.5")
        at_tie = float(Decimal(repr(low)) + tenth * half / 100)
        for value in (data.draw(any_float), at_tie):
            assert encode(value) == reference_range(value, score)

    @given(st.lists(any_fields, max_size=30), catalogs())
    def test_validation_is_total(self, fields: list[DataField], catalog: CatalogDocument) -> None:
        errors = validate_selection(fields, catalog)
        for error in errors:
            match = re.fullmatch(r"/body/fields/(\d+)(/(key|format|label))?", error.pointer)
            assert match is not None
            assert error.detail.startswith(f"fields[{match.group(1)}] (")
        # Whatever it accepts, the targets can be built and the encoder fills.
        if not errors:
            field_map = synced_field_map(fields, catalog)
            plan = compile_plan(fields, field_map, catalog)
            assert all(step.skip_reason is None for step in plan.steps)
