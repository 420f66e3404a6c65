"""Declaring embedded-data fields in a Qualtrics survey flow (qualtrics-api.md §4.3).

`PUT .../flow` replaces the whole flow, so we read it, add what is missing to one
EmbeddedData element (created first in the flow if the survey has none), and write it back.
Fields are only ever added: removing one would hide data already collected.
"""

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

_FLOW_ID = re.compile(r"FL_([1-9][0-9]*)")


def _flow_numbers(element: Mapping[str, Any]) -> list[int]:
    numbers = []
    match = _FLOW_ID.fullmatch(str(element.get("FlowID", "")))
    if match:
        numbers.append(int(match.group(1)))
    for child in element.get("Flow", []) or []:
        if isinstance(child, Mapping):
            numbers.extend(_flow_numbers(child))
    return numbers


def _count_elements(element: Mapping[str, Any]) -> int:
    children = [child for child in element.get("Flow", []) or [] if isinstance(child, Mapping)]
    return len(children) + sum(_count_elements(child) for child in children)


def declared_fields(flow: Mapping[str, Any]) -> dict[str, str]:
    """Every embedded-data field the flow declares, with its VariableType."""
    fields: dict[str, str] = {}

    def visit(element: Mapping[str, Any]) -> None:
        if element.get("Type") == "EmbeddedData":
            for item in element.get("EmbeddedData", []) or []:
                if isinstance(item, Mapping) and "Field" in item:
                    fields[str(item["Field"])] = str(item.get("VariableType", ""))
        for child in element.get("Flow", []) or []:
            if isinstance(child, Mapping):
                visit(child)

    visit(flow)
    return fields


def with_embedded_fields(
    flow: Mapping[str, Any], items: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """The flow with every item declared; and whether anything had to be added."""
    missing = [item for item in items if item["Field"] not in declared_fields(flow)]
    updated = copy.deepcopy(dict(flow))
    if not missing:
        return updated, False
    top = updated.setdefault("Flow", [])
    element = next(
        (child for child in top if isinstance(child, dict) and child.get("Type") == "EmbeddedData"),
        None,
    )
    if element is None:
        next_number = max(_flow_numbers(updated), default=1) + 1
        element = {"Type": "EmbeddedData", "FlowID": f"FL_{next_number}", "EmbeddedData": []}
        # First in the flow, the usual place: values are set before any block is shown.
        top.insert(0, element)
    element.setdefault("EmbeddedData", []).extend(dict(item) for item in missing)
    properties = updated.setdefault("Properties", {})
    properties["Count"] = max(
        int(properties.get("Count", 0) or 0),
        _count_elements(updated),
        max(_flow_numbers(updated), default=0),
    )
    return updated, True
