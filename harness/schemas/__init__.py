"""JSON Schemas shipped with the harness, and a small validator for the subset of JSON Schema they use.

Why not the ``jsonschema`` package: the schemas here use a dozen keywords, and a 100-line validator keeps the core
free of a dependency (and of its Rust extension) while giving one-line, path-named errors. Supported keywords:
``type`` (one or a list), ``properties``, ``required``, ``additionalProperties`` (bool or schema), ``items``,
``enum``, ``const``, ``minimum``, ``maximum``, ``minLength``, ``minItems``, ``maxItems``, ``pattern``, ``anyOf``,
``oneOf``, ``$ref`` to ``#/$defs/NAME``. Any other keyword in a schema is refused when the schema is loaded, so a
schema can never silently claim a check that is not made.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

SUPPORTED = {"$schema", "$id", "$defs", "title", "description", "type", "properties", "required",
             "additionalProperties", "items", "enum", "const", "minimum", "maximum", "minLength", "minItems",
             "maxItems", "pattern", "anyOf", "oneOf", "$ref", "$comment"}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


@cache
def load_schema(name: str) -> dict:
    """The packaged schema ``harness/schemas/<name>.schema.json`` (checked for unsupported keywords)."""
    schema = json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text())
    _check_keywords(schema, name)
    return schema


def _check_keywords(node: object, where: str) -> None:
    if isinstance(node, dict):
        unknown = set(node) - SUPPORTED
        if unknown:
            raise ValueError(f"schema {where}: unsupported keyword(s) {sorted(unknown)}")
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub_key, sub in value.items():
                    _check_keywords(sub, f"{where}/{key}/{sub_key}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                _check_keywords(value, f"{where}/{key}")
            elif key in ("anyOf", "oneOf"):
                for i, sub in enumerate(value):
                    _check_keywords(sub, f"{where}/{key}/{i}")


def validate(instance: object, schema: dict) -> list[str]:
    """Every violation of ``schema`` by ``instance``, as ``"<json path>: <problem>"`` lines (empty: valid)."""
    errors: list[str] = []
    _validate(instance, schema, schema, "$", errors)
    return errors


def _is_type(value: object, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _validate(value: object, schema: dict, root: dict, path: str, errors: list[str]) -> None:
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        _validate(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path, errors)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _validate(item, schema["items"], root, f"{path}[{i}]", errors)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required field {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _validate(item, properties[key], root, f"{path}.{key}", errors)
            elif extra is False:
                errors.append(f"{path}: unknown field {key!r}")
            elif isinstance(extra, dict):
                _validate(item, extra, root, f"{path}.{key}", errors)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            passing = sum(not validate_sub(value, sub, root, path) for sub in schema[keyword])
            if passing == 0 or (keyword == "oneOf" and passing > 1):
                need = "exactly one" if keyword == "oneOf" else "at least one"
                errors.append(f"{path}: matches {passing} of the {keyword} alternatives, needs {need}")


def validate_sub(value: object, schema: dict, root: dict, path: str) -> list[str]:
    errors: list[str] = []
    _validate(value, schema, root, path, errors)
    return errors
