"""Survey flows: the default one, walking them, validating `PUT .../flow` (qualtrics-api.md §4.3).

A flow is stored exactly as it was PUT and returned unchanged by GET. Validation follows the §7
checklist: `FlowID`, `Type`, `Flow` and `Properties` are required; every element needs a `Type`
from the spec's FlowType enum and a `FlowID` (`FL_<n>`, unique in the whole flow) [U: the spec
does not mark element FlowIDs required; every real flow has them]; block elements must name a
block of the survey; EmbeddedData items need `Description`, `Type` and `Field` (≤ 100 chars),
a `VariableType` from the enum if given, and a string `Value` of ≤ 100 chars if given.
`Properties.Count` is not checked [U].
"""

from collections.abc import Collection, Iterator
from typing import Any

from .envelope import JsonObject, bad_request
from .spec import (
    BLOCK_FLOW_TYPES,
    BLOCK_ID,
    EMBEDDED_DATA_TYPES,
    FLOW_ID,
    FLOW_MAX_ELEMENTS,
    FLOW_TYPES,
    SHORT_TEXT_MAX,
    VARIABLE_TYPES,
)

_REQUIRED_ROOT_FIELDS = ("FlowID", "Type", "Flow", "Properties")
_REQUIRED_EMBEDDED_FIELDS = ("Description", "Type", "Field")


def new_root_flow(default_block_id: str) -> JsonObject:
    """The flow of a new survey: root `FL_1` holding the default block as `FL_2` [S example]."""
    return {
        "FlowID": "FL_1",
        "Type": "Root",
        "Flow": [{"ID": default_block_id, "Type": "Block", "FlowID": "FL_2"}],
        "Properties": {"Count": 2},
    }


def walk(elements: list[Any]) -> Iterator[JsonObject]:
    """Every element of a (validated) flow, depth first, nested `Flow` lists included."""
    for element in elements:
        yield element
        yield from walk(element.get("Flow", []))


def embedded_data_items(flow: JsonObject) -> list[JsonObject]:
    """The EmbeddedData items declared anywhere in the flow, in flow order."""
    return [
        item
        for element in walk(flow["Flow"])
        if element["Type"] == "EmbeddedData"
        for item in element.get("EmbeddedData", [])
    ]


def next_flow_id(flow: JsonObject) -> str:
    numbers = [int(flow["FlowID"][3:])]
    numbers += [int(element["FlowID"][3:]) for element in walk(flow["Flow"])]
    return f"FL_{max(numbers) + 1}"


def validate_flow(body: object, block_ids: Collection[str]) -> JsonObject:
    """Return the body if it is a valid flow for a survey with these blocks; 400 otherwise."""
    if not isinstance(body, dict):
        raise bad_request("The flow must be a JSON object")
    missing = [name for name in _REQUIRED_ROOT_FIELDS if name not in body]
    if missing:
        raise bad_request(f"Missing required flow field(s): {', '.join(missing)}")
    if not isinstance(body["Flow"], list):
        raise bad_request("Flow must be an array")
    if not isinstance(body["Properties"], dict):
        raise bad_request("Properties must be an object")
    seen_flow_ids: set[str] = set()
    _check_type_and_flow_id(body, "the root", seen_flow_ids)
    elements = 0
    for where, element in _checked_elements(body["Flow"], "Flow"):
        elements += 1
        _check_element(element, where, block_ids, seen_flow_ids)
    if elements > FLOW_MAX_ELEMENTS:
        raise bad_request(f"A flow holds at most {FLOW_MAX_ELEMENTS} elements, not {elements}")
    return body


def _checked_elements(elements: list[Any], where: str) -> Iterator[tuple[str, JsonObject]]:
    for index, element in enumerate(elements):
        here = f"{where}[{index}]"
        if not isinstance(element, dict):
            raise bad_request(f"{here} must be an object")
        yield here, element
        nested = element.get("Flow")
        if nested is not None:
            if not isinstance(nested, list):
                raise bad_request(f"{here}.Flow must be an array")
            yield from _checked_elements(nested, f"{here}.Flow")


def _check_type_and_flow_id(element: JsonObject, where: str, seen: set[str]) -> None:
    kind = element.get("Type")
    if kind not in FLOW_TYPES:
        raise bad_request(f"Invalid flow Type {kind!r} at {where}")
    flow_id = element.get("FlowID")
    if not isinstance(flow_id, str) or not FLOW_ID.matches(flow_id):
        raise bad_request(f"Invalid or missing FlowID {flow_id!r} at {where}")
    if flow_id in seen:
        raise bad_request(f"Duplicate FlowID {flow_id} at {where}")
    seen.add(flow_id)


def _check_element(
    element: JsonObject, where: str, block_ids: Collection[str], seen: set[str]
) -> None:
    _check_type_and_flow_id(element, where, seen)
    if element["Type"] in BLOCK_FLOW_TYPES:
        block_id = element.get("ID")
        if not isinstance(block_id, str) or not BLOCK_ID.matches(block_id):
            raise bad_request(f"Invalid block ID {block_id!r} at {where}")
        if block_id not in block_ids:
            raise bad_request(f"Block {block_id} at {where} does not exist in this survey")
    if element["Type"] == "EmbeddedData":
        items = element.get("EmbeddedData")
        if not isinstance(items, list):
            raise bad_request(f"{where}.EmbeddedData must be an array")
        for index, item in enumerate(items):
            _check_embedded_item(item, f"{where}.EmbeddedData[{index}]")


def _check_embedded_item(item: object, where: str) -> None:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object")
    for name in _REQUIRED_EMBEDDED_FIELDS:
        if not isinstance(item.get(name), str):
            raise bad_request(f"{where}.{name} is required and must be a string")
    if not item["Field"]:
        raise bad_request(f"{where}.Field must not be empty")
    for name in ("Description", "Field", "Value"):
        value = item.get(name)
        if name in item and not isinstance(value, str):
            raise bad_request(f"{where}.{name} must be a string")
        if isinstance(value, str) and len(value) > SHORT_TEXT_MAX:
            raise bad_request(f"{where}.{name} is longer than {SHORT_TEXT_MAX} characters")
    if item["Type"] not in EMBEDDED_DATA_TYPES:
        raise bad_request(f"Invalid embedded data Type {item['Type']!r} at {where}")
    if "VariableType" in item and item["VariableType"] not in VARIABLE_TYPES:
        raise bad_request(f"Invalid VariableType {item['VariableType']!r} at {where}")
