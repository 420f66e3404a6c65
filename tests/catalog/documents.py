"""Catalogue documents shared by the catalogue tests."""

import copy
from typing import Any

VALID_DOCUMENT: dict[str, Any] = {
    "categories": [
        {"name": "Frustration", "description": "The customer expresses frustration."},
        {"name": "Repeat contact", "description": None},
        {"name": "Cancellation", "description": None},
    ],
    "category_groups": [{"name": "Effort", "members": ["Frustration", "Repeat contact"]}],
    "scores": [
        {
            "name": "TEI",
            "min": 0.0,
            "max": 10.0,
            "ranges": [
                {"label": "Low", "min": 0.0, "max": 3.3},
                {"label": "Average", "min": 3.3, "max": 6.6},
                {"label": "High", "min": 6.6, "max": 10.0},
            ],
        },
        {"name": "AIS", "min": -100.0, "max": 100.0, "ranges": []},
    ],
    "custom_metadata_fields": [{"name": "Product line"}],
    "call_group_types": [{"name": "Team"}],
}

EMPTY_DOCUMENT: dict[str, Any] = {
    "categories": [],
    "category_groups": [],
    "scores": [],
    "custom_metadata_fields": [],
    "call_group_types": [],
}


def valid_document() -> dict[str, Any]:
    """A fresh deep copy of VALID_DOCUMENT, safe to modify."""
    return copy.deepcopy(VALID_DOCUMENT)
