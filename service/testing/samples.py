"""Sample data shared by the tests and the micro-benchmark (which cannot import from tests/).

- `APP_URL` and `TRIGGER_NAME`: what an encoding is given for the link and the trigger;
- `score`: a catalogue score document, written out in one line;
- `synced_field_map`: the field map the survey sync stores after creating every target.
"""

from collections.abc import Sequence
from typing import Any

from service.catalog.schemas import CatalogDocument
from service.data_fields.schemas import DataField
from service.data_fields.targets import QuestionTarget, build_targets

APP_URL = "https://app.creovai.com"
TRIGGER_NAME = "Frustrated callers"


def score(
    name: str, minimum: float, maximum: float, *ranges: tuple[str, float, float]
) -> dict[str, Any]:
    """A score of the catalogue; `ranges` are (label, min, max), and left out when none."""
    document: dict[str, Any] = {"name": name, "min": minimum, "max": maximum}
    if ranges:
        document["ranges"] = [
            {"label": label, "min": low, "max": high} for label, low, high in ranges
        ]
    return document


def synced_field_map(
    fields: Sequence[DataField], catalog: CatalogDocument
) -> dict[str, dict[str, Any]]:
    """The field map the survey sync stores: question ids in order (QID1, QID2, ...), embedded
    fields by name."""
    field_map: dict[str, dict[str, Any]] = {}
    number = 0
    for target in build_targets(fields, catalog):
        if target.target_key in field_map:
            continue
        if isinstance(target, QuestionTarget):
            number += 1
            field_map[target.target_key] = target.field_map_entry(f"QID{number}")
        else:
            field_map[target.target_key] = target.field_map_entry()
    return field_map
