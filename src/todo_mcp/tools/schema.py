"""The JSON schemas a tool publishes, made from its models without the bytes a model does not need."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def slim_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON schema without pydantic's generated titles and `"default": null`.

    `anyOf: [X, null]` becomes X for fields that default to None: leaving such a field out means
    "not given", and outputs leave it out rather than send null. A required field that may be
    null, like next_cursor, keeps its null.
    """

    def walk(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("title", None)
        optional = "default" in node and node["default"] is None
        if optional:
            del node["default"]
        options = node.get("anyOf")
        if optional and isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            (kept,) = [option for option in options if option != {"type": "null"}]
            del node["anyOf"]
            node = {**kept, **node}
        for key in ("properties", "$defs"):
            if isinstance(node.get(key), dict):
                node[key] = {name: walk(sub) for name, sub in node[key].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key])
        if isinstance(node.get("anyOf"), list):
            node["anyOf"] = [walk(option) for option in node["anyOf"]]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def published_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The inputSchema or outputSchema of a tool whose arguments or result are `model`.

    Model docstrings (the REST documentation's words) are left out: the tool's description
    already says what the tool takes and gives. Nested models are inlined, so a client
    validates a result against one shallow schema with no references to resolve.
    """
    schema = slim_schema(model.model_json_schema())
    definitions = schema.pop("$defs", {})
    for definition in definitions.values():
        definition.pop("description", None)
    schema.pop("description", None)
    inlined: dict[str, Any] = _inline(schema, definitions)
    return inlined


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The inputSchema of a tool whose arguments are `model`, usable as is and in strict mode.

    Every optional property also accepts null, which means "not given" (strict-mode agents send
    every property). A default is said in words rather than as a `default` keyword, which
    strict-mode converters reject or strip.
    """
    schema = published_schema(model)
    required = set(schema.get("required", ()))
    properties = schema.get("properties", {})
    schema["properties"] = {
        name: spec if name in required else _nullable(spec) for name, spec in properties.items()
    }
    return schema


def _nullable(spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    if "default" in spec:
        default = spec.pop("default")
        said = default if isinstance(default, str) else json.dumps(default)
        spec["description"] = " ".join([*filter(None, [spec.get("description")]), f"Default {said}."])
    if "enum" in spec:
        spec["enum"] = [*spec["enum"], None]
    if isinstance(spec.get("type"), str):
        spec["type"] = [spec["type"], "null"]
    elif "anyOf" in spec:
        spec["anyOf"] = [*spec["anyOf"], {"type": "null"}]
    return spec


def result_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The outputSchema of a tool whose result is `model`: cheap for a client to check each result.

    SDK clients validate every result against it, so it stays shallow: a list's items are declared
    objects and no more (the field's description says what they hold), where a full item schema
    would cost a client milliseconds per page. The `type` next to an `enum` is left out: the
    enum's values already fix the type, and no model generates a result from this schema.
    """
    trimmed: dict[str, Any] = _drop_enum_types(_shallow_lists(published_schema(model)))
    return trimmed


def _shallow_lists(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the items of every list-of-objects property reduced to `{"type": "object"}`."""
    properties = {
        name: {**spec, "items": {"type": "object"}}
        if spec.get("type") == "array" and spec.get("items", {}).get("type") == "object"
        else spec
        for name, spec in schema.get("properties", {}).items()
    }
    return {**schema, "properties": properties}


def _drop_enum_types(node: Any) -> Any:
    if isinstance(node, list):
        return [_drop_enum_types(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: _drop_enum_types(value) for key, value in node.items() if not (key == "type" and "enum" in node)
    }


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with every `{"$ref": "#/$defs/X"}` replaced by X itself (the models are not recursive)."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
    return {key: _inline(value, definitions) for key, value in node.items()}
