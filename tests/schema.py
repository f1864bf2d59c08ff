r"""A validator for the subset of JSON Schema that ``runtime/schemas/renorm.schema.json`` uses.

type (one or a list; ``integer`` and ``number`` exclude booleans), enum, required,
properties, additionalProperties (false), items, minItems, maxItems, minimum, and local
``$ref``. Anything else in a schema is an error here, so the schema cannot silently say more
than is checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parent.parent / "runtime" / "schemas" / "renorm.schema.json"
_KEYWORDS = {"type", "enum", "required", "properties", "additionalProperties", "items", "minItems", "maxItems", "minimum", "$ref"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def load() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def errors(instance: Any, name: str, root: dict | None = None) -> list[str]:
    r"""What is wrong with ``instance`` against ``$defs/name`` (empty when it conforms)."""
    root = root or load()
    return _check(instance, {"$ref": f"#/$defs/{name}"}, root, name)


def _check(value: Any, schema: dict, root: dict, where: str) -> list[str]:
    unknown = set(schema) - _KEYWORDS - {"title", "description", "$schema"}
    if unknown:
        raise ValueError(f"{where}: schema keyword(s) {sorted(unknown)} are not checked by this validator")
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _check(value, target, root, where)
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{where}: {value!r:.60} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        found.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{where}: missing {key!r}")
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            found += [f"{where}: unexpected {key!r}" for key in value if key not in properties]
        for key, sub in properties.items():
            if key in value:
                found += _check(value[key], sub, root, f"{where}.{key}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += _check(item, schema["items"], root, f"{where}[{i}]")
    return found
