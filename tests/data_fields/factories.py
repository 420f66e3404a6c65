"""Catalogues, interactions and synced field maps shared by the data-field tests (no database)."""

import copy
from collections.abc import Sequence
from typing import Any

from service.catalog.schemas import CatalogDocument
from service.data_fields.encoding import EncodedResponse, compile_plan
from service.data_fields.schemas import DataField
from service.interactions.schemas import INTERACTION_EXAMPLE, Interaction
from service.testing import samples
from service.testing.samples import APP_URL, score
from service.testing.samples import TRIGGER_NAME as TRIGGER

CATALOG_DOCUMENT: dict[str, Any] = {
    "categories": [
        {"name": "Frustration"},
        {"name": "Repeat contact"},
        {"name": "Cancellation"},
        {"name": "Hold, long"},
        {"name": "Escalation"},
    ],
    "category_groups": [
        {"name": "Effort", "members": ["Frustration", "Repeat contact", "Hold, long"]},
        {"name": "Churn risk", "members": ["Cancellation", "Escalation"]},
    ],
    "scores": [
        score("TEI", 0, 10, ("Low", 0, 3.3), ("Average", 3.3, 6.6), ("High", 6.6, 10)),
        score("AIS", -100, 100),
        score("CSAT", 1, 5, ("Unhappy", 1, 3), ("Happy", 3, 5)),
    ],
    "custom_metadata_fields": [
        {"name": "region"},
        {"name": "Product line"},
        {"name": "priority"},
        {"name": "vip"},
        {"name": "weight"},
    ],
    "call_group_types": [{"name": "Team"}, {"name": "Site"}],
}

CATALOG = CatalogDocument.model_validate(CATALOG_DOCUMENT)

# One valid key per source, for tables over every source.
VALID_KEYS: dict[str, str] = {
    "interaction_detail": "agent",
    "customer_detail": "email",
    "score": "TEI",
    "category": "Frustration",
    "category_group": "Effort",
    "custom_metadata": "region",
    "call_group_type": "Team",
}


def field(
    source: str, key: str, placement: str = "embedded_data", fmt: str = "text", **extra: Any
) -> DataField:
    return DataField.model_validate(
        {"source": source, "key": key, "placement": placement, "format": fmt, **extra}
    )


def interaction(**changes: Any) -> Interaction:
    """The design's example interaction, with top-level members replaced (None removes)."""
    data = copy.deepcopy(INTERACTION_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return Interaction.model_validate(data)


def synced_field_map(
    fields: Sequence[DataField], catalog: CatalogDocument = CATALOG
) -> dict[str, dict[str, Any]]:
    """The field map the lead would store after creating every target (QID1, QID2, ...)."""
    return samples.synced_field_map(fields, catalog)


def encode(
    fields: Sequence[DataField],
    subject: Interaction | None = None,
    *,
    catalog: CatalogDocument = CATALOG,
    field_map: dict[str, dict[str, Any]] | None = None,
    trigger_name: str = TRIGGER,
) -> EncodedResponse:
    """Encode with a freshly synced survey unless a field map is given."""
    plan = compile_plan(
        fields, synced_field_map(fields, catalog) if field_map is None else field_map, catalog
    )
    return plan.encode(subject or interaction(), trigger_name=trigger_name, creovai_app_url=APP_URL)


def value_of(one_field: DataField, subject: Interaction | None = None, **kwargs: Any) -> Any:
    """What one field puts into `values` (None when left out)."""
    response = encode([one_field], subject, **kwargs)
    return response.fields[0].value
