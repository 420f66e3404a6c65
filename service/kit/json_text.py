"""JSON columns that accept a document already serialized, so it is not serialized twice.

SQLAlchemy's JSON types call the engine's `json_serializer` on every value bound to them.
A pydantic model dumps itself straight to JSON text (in Rust) several times faster than
`model_dump()` followed by `json.dumps` does, so hot paths (intake) bind `JSONText(text)`, which
this serializer passes through as is; any other value goes to `json.dumps` as before.
"""

import json
from typing import Any


class JSONText(str):
    """A JSON document as text, bound to a JSON column without re-serialization."""

    __slots__ = ()


def json_serializer(value: Any) -> str:
    if isinstance(value, JSONText):
        return str.__str__(value)
    return json.dumps(value)
