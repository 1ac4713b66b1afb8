"""A small JSON Schema (2020-12) validator for the subset the API's schemas use.

The request schemas published in the OpenAPI document are the ones requests are checked against,
so the document and the checks cannot drift apart. Supported keywords: ``$ref`` (to
``#/components/schemas/...``), ``type`` (a name or a list of names), ``enum``, ``properties``,
``required``, ``additionalProperties`` (a boolean), ``items``, ``minItems``, ``maxItems``,
``uniqueItems``, ``minLength``, ``maxLength``, ``pattern``, ``minimum``, ``maximum``, and ``format``
``date-time``; annotations (``description``, ``default``, ``examples``, ``readOnly``,
``writeOnly``, ``title``) are ignored. :func:`unsupported_keywords` lists anything else, so a schema
using a keyword this module would silently skip is caught by the tests.

Integers are JSON numbers without a fraction *written as integers*: ``1.0`` is refused (the store
takes Python ints), which is stricter than JSON Schema and said so in the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ._problems import FieldError

Schema = Mapping[str, Any]

ANNOTATIONS = frozenset({"description", "default", "examples", "readOnly", "writeOnly", "title"})
KEYWORDS = ANNOTATIONS | {
    "$ref",
    "type",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "format",
}
FORMATS = frozenset({"date-time"})
_REF_PREFIX = "#/components/schemas/"

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    raise ValueError(f"unknown JSON Schema type {name!r}")


_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_datetime(value: str) -> datetime | None:
    """An RFC 3339 date-time with its offset, in UTC; None if it is not one (or not one in UTC:
    0001-01-01T00:00:00+01:00 is in year 0)."""
    if not _DATETIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=256)
def compiled(pattern: str) -> re.Pattern[str]:
    """A JSON Schema (ECMA 262) pattern in Python: a final ``$`` matches at the very end only (not
    before a final newline, as Python's does)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Validator:
    """Checks values against schemas that may refer to ``definitions`` by ``$ref``."""

    def __init__(self, definitions: Mapping[str, Schema]) -> None:
        self.definitions = definitions

    def resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith(_REF_PREFIX):
                raise ValueError(f"unsupported $ref {ref!r}")
            schema = self.definitions[ref[len(_REF_PREFIX) :]]
        return schema

    def errors(self, schema: Schema, value: Any, path: str = "") -> list[FieldError]:
        """Every way ``value`` breaks ``schema`` (empty: it conforms)."""
        out: list[FieldError] = []
        self._check(self.resolve(schema), value, path, out)
        return out

    def _check(self, schema: Schema, value: Any, path: str, out: list[FieldError]) -> None:
        field = path or None
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            if not any(_is_type(value, n) for n in names):
                out.append(FieldError(field, "must be " + " or ".join(_TYPE_NAMES[n] for n in names)))
                return
        if "enum" in schema and value not in schema["enum"]:
            shown = ", ".join("null" if e is None else str(e) for e in schema["enum"])
            out.append(FieldError(field, f"must be one of {shown}"))
            return
        if isinstance(value, str):
            self._check_string(schema, value, field, out)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            too_low = "minimum" in schema and value < schema["minimum"]
            if too_low or ("maximum" in schema and value > schema["maximum"]):
                out.append(FieldError(field, self._range(schema)))
        elif isinstance(value, dict):
            self._check_object(schema, value, path, out)
        elif isinstance(value, list):
            self._check_array(schema, value, path, out)

    @staticmethod
    def _range(schema: Schema) -> str:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"must be from {low} to {high}"
        return f"must be at least {low}" if low is not None else f"must be at most {high}"

    @staticmethod
    def _check_string(schema: Schema, value: str, field: str | None, out: list[FieldError]) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            low = schema["minLength"]
            out.append(
                FieldError(field, "must not be empty" if low == 1 else f"must be at least {low} characters")
            )
        elif "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(FieldError(field, f"must be at most {schema['maxLength']} characters"))
        elif "pattern" in schema and not compiled(schema["pattern"]).search(value):
            out.append(FieldError(field, f"must match the pattern {schema['pattern']}"))
        elif schema.get("format") == "date-time" and parse_datetime(value) is None:
            out.append(FieldError(field, "must be an RFC 3339 date-time such as 2030-01-02T03:04:05Z"))

    def _check_object(self, schema: Schema, value: dict[str, Any], path: str, out: list[FieldError]) -> None:
        properties: Mapping[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                out.append(FieldError(_join(path, name), "is required"))
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                self._check(self.resolve(properties[name]), item, _join(path, name), out)
            elif extra is False:
                out.append(FieldError(_join(path, name), "is not a known field"))

    def _check_array(self, schema: Schema, value: list[Any], path: str, out: list[FieldError]) -> None:
        field = path or None
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(FieldError(field, f"must have at least {schema['minItems']} item(s)"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(FieldError(field, f"must have at most {schema['maxItems']} items"))
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            out.append(FieldError(field, "must not repeat an item"))
        if "items" in schema:
            items = self.resolve(schema["items"])
            for i, item in enumerate(value):
                self._check(items, item, f"{path}[{i}]", out)


def unsupported_keywords(schema: Any, where: str = "") -> list[str]:
    """Where ``schema`` (walked whole) uses a keyword or format this validator does not check."""
    found: list[str] = []
    if not isinstance(schema, Mapping):
        return found
    for key, value in schema.items():
        if key not in KEYWORDS:
            found.append(f"{where or '/'}: {key}")
        elif key == "format" and value not in FORMATS:
            found.append(f"{where or '/'}: format {value}")
        elif key == "properties":
            for name, sub in value.items():
                found += unsupported_keywords(sub, f"{where}/properties/{name}")
        elif key == "items":
            found += unsupported_keywords(value, f"{where}/items")
    return found
