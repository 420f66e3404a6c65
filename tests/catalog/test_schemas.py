"""The catalogue rules on their own, without HTTP: locations, messages, and properties."""

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.catalog.schemas import Catalog, CatalogDocument, Score
from tests.catalog.documents import VALID_DOCUMENT, valid_document

# Boundaries of a score's bands: sorted, distinct, finite (2 to 9 of them: 1 to 8 bands).
boundaries = st.lists(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=9,
    unique=True,
).map(sorted)


def tiled_score(points: list[float]) -> dict[str, Any]:
    """A score whose ranges tile [points[0], points[-1]] at the given boundaries."""
    return {
        "name": "Score",
        "min": points[0],
        "max": points[-1],
        "ranges": [
            {"label": f"Band {index}", "min": low, "max": high}
            for index, (low, high) in enumerate(pairwise(points))
        ],
    }


def locations(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[int | str, ...]]:
    return [tuple(error["loc"]) for error in exc.value.errors()]


class TestScoreRanges:
    @given(boundaries)
    def test_any_contiguous_tiling_is_valid(self, points: list[float]) -> None:
        score = Score.model_validate(tiled_score(points))
        assert [band.min for band in score.ranges] == points[:-1]

    @given(boundaries, st.data())
    def test_moving_any_one_boundary_is_refused(
        self, points: list[float], data: st.DataObject
    ) -> None:
        score = tiled_score(points)
        # Every place a boundary is written: the score's own min/max, and each band's ends.
        places: list[tuple[dict[str, Any], str]] = [(score, "min"), (score, "max")]
        places += [(band, end) for band in score["ranges"] for end in ("min", "max")]
        target, key = data.draw(st.sampled_from(places))
        moved = data.draw(
            st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
        )
        assume(moved != target[key])
        target[key] = moved
        with pytest.raises(ValidationError):
            Score.model_validate(score)

    def test_no_ranges_is_fine(self) -> None:
        assert Score.model_validate({"name": "AIS", "min": -1, "max": 1}).ranges == []

    def test_unsorted_ranges_are_reported_once(self) -> None:
        score = tiled_score([0, 1, 2, 3])
        score["ranges"].reverse()
        with pytest.raises(ValidationError) as exc:
            Score.model_validate(score)
        assert locations(exc) == [("ranges",)]


class TestCatalogDocument:
    def test_example_is_valid(self) -> None:
        document = CatalogDocument.model_validate(VALID_DOCUMENT)
        assert document.model_dump(mode="json") == VALID_DOCUMENT

    def test_every_model_documents_an_example(self) -> None:
        definitions = Catalog.model_json_schema()["$defs"]
        assert set(definitions) == {
            "Category",
            "CategoryGroup",
            "Score",
            "ScoreRange",
            "CustomMetadataField",
            "CallGroupType",
        }
        for name, schema in definitions.items():
            assert schema["examples"], name
            assert schema["additionalProperties"] is False, name
        for model in (Catalog, CatalogDocument):
            example = model.model_json_schema()["examples"][0]
            assert model.model_validate(example)

    def test_locations_are_relative_to_where_the_document_sits(self) -> None:
        # The `catalog.updated` webhook validates `data` in an envelope; locations still point
        # at the exact item.
        document = valid_document()
        document["category_groups"][0]["members"].append("Nope")
        with pytest.raises(ValidationError) as exc:
            CatalogDocument.model_validate(document)
        assert locations(exc) == [("category_groups", 0, "members", 2)]
        assert exc.value.errors()[0]["type"] == "unknown_category"

    def test_lone_surrogate_is_refused_with_a_readable_message(self) -> None:
        with pytest.raises(ValidationError) as exc:
            CatalogDocument.model_validate(
                {
                    "categories": [{"name": "A"}],
                    "category_groups": [{"name": "\ud800", "members": ["A"]}],
                }
            )
        assert locations(exc) == [("category_groups", 0, "name")]

    def test_lookups(self) -> None:
        document = CatalogDocument.model_validate(VALID_DOCUMENT)
        assert document.category_names() == ["Frustration", "Repeat contact", "Cancellation"]
        group = document.category_group("Effort")
        assert group is not None
        assert group.members == ["Frustration", "Repeat contact"]
        assert document.category_group("effort") is None
        score = document.score("TEI")
        assert score is not None
        assert [band.label for band in score.ranges] == ["Low", "Average", "High"]
        assert document.score("NPS") is None
        assert document.counts()["categories"] == 3
