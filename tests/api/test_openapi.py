"""The OpenAPI document describes exactly what is served, with schemas the validator fully checks."""

from __future__ import annotations

import json

import pytest

from kokoa import store as st
from kokoa.api import AdminAPI, openapi_document
from kokoa.api._jsonschema import Validator, parse_datetime, unsupported_keywords
from kokoa.api._routes import ROUTES
from kokoa.api._schemas import SCHEMAS
from kokoa.store import _schema as store_schema
from kokoa.store import _validate as store_validate

pytestmark = pytest.mark.sans_io

DOCUMENT = openapi_document()


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_route_is_served_and_documented_once():
    served = {(rule.rule, method) for rule in AdminAPI.app.url_map.iter_rules() for method in rule.methods}
    for route in ROUTES:
        assert (route.werkzeug_path, route.method) in served
        operation = DOCUMENT["paths"][route.path][route.method.lower()]
        assert str(route.status) in operation["responses"]
        assert ("security" in operation) == (not route.auth)
    documented = {(path, method.upper()) for path, ops in DOCUMENT["paths"].items() for method in ops}
    assert len(documented) == len(ROUTES) == len({r.operation_id for r in ROUTES})
    assert {m for _, m in served} <= {"GET", "HEAD", "POST", "PATCH", "DELETE"}


def test_the_document_is_json_and_every_reference_resolves():
    json.dumps(DOCUMENT)
    for ref in _refs(DOCUMENT):
        _, section, kind, name = ref.split("/")
        assert name in DOCUMENT[section][kind], ref
    assert DOCUMENT["openapi"] == "3.1.0" and DOCUMENT["security"] == [{"bearer": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for operation in (op for ops in DOCUMENT["paths"].values() for op in ops.values()):
        if "security" not in operation:
            assert {"401", "403"} <= set(operation["responses"])


def test_the_validator_checks_every_keyword_the_schemas_use():
    for name, schema in SCHEMAS.items():
        assert unsupported_keywords(schema) == [], name
    for route in ROUTES:
        for name, schema in route.query.items():
            assert unsupported_keywords(schema) == [], (route.path, name)


def test_the_limits_are_the_stores():
    from kokoa.api import _schemas as api

    assert (api.NAME_LENGTH, api.HOSTNAME_LENGTH, api.PATH_LENGTH, api.EMAIL_LENGTH, api.ID_LENGTH) == (
        store_schema.NAME_LENGTH,
        store_schema.HOSTNAME_LENGTH,
        store_schema.PATH_LENGTH,
        store_schema.EMAIL_LENGTH,
        store_schema.ID_LENGTH,
    )
    assert (api.PASSWORD_MIN, api.PASSWORD_MAX) == (store_validate.PASSWORD_MIN, store_validate.PASSWORD_MAX)
    assert (api.MAX_WEIGHT, api.EXPECTED_STATUS_LENGTH, api.MAX_HSTS_MAX_AGE) == (
        st.MAX_WEIGHT,
        store_schema.EXPECTED_STATUS_LENGTH,
        store_schema.MAX_HSTS_MAX_AGE,
    )


@pytest.mark.parametrize(
    ("schema", "value", "errors"),
    [
        ("SiteCreate", {"name": "a"}, {}),
        ("SiteCreate", {"name": ""}, {"name": "must not be empty"}),
        ("SiteCreate", {"enabled": 1}, {"name": "is required", "enabled": "must be true or false"}),
        (
            "ResourceCreate",
            {"name": "a", "kind": "tcp", "public_port": True},
            {"public_port": "must be an integer"},
        ),
        ("UserUpdate", {"display_name": None, "password": None}, {}),
        ("UserUpdate", {"display_name": 3}, {"display_name": "must be a string or null"}),
        ("ApiKeyCreate", {"name": "k", "scopes": []}, {"scopes": "must have at least 1 item(s)"}),
        ("ApiKeyCreate", {"name": "k", "scopes": ["read", 1]}, {"scopes[1]": "must be a string"}),
        (
            "ApiKeyCreate",
            {"name": "k", "scopes": ["*"], "expires_at": "2030-01-01"},
            {"expires_at": "must be an"},
        ),
        ("TargetUpdate", {"health_check": {"path": 1}}, {"health_check.path": "must be a string or null"}),
        ("ResourceUpdate", {"hsts_max_age": -1}, {"hsts_max_age": "must be from 0 to 63072000"}),
        ("ResourceUpdate", {"lb_method": "random"}, {"lb_method": "must be one of"}),
        ("TargetUpdate", {"tls_server_name": None, "tls_verify": None}, {"tls_verify": "must be true"}),
        ("RuleCreate", {"priority": -1, "action": "allow"}, {"priority": "must be from 0 to 1000000"}),
    ],
)
def test_the_validator(schema, value, errors):
    found = {e.field: e.message for e in Validator(SCHEMAS).errors(SCHEMAS[schema], value)}
    assert set(found) == set(errors)
    for field, message in errors.items():
        assert found[field].startswith(message)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2030-01-02T03:04:05Z", True),
        ("2030-01-02t03:04:05.123456789z", True),
        ("2030-01-02T03:04:05+05:30", True),
        ("2030-01-02T03:04:05", False),  # no offset
        ("2030-02-30T00:00:00Z", False),
        ("2030-01-02", False),
        ("٢٠٣٠-01-02T03:04:05Z", False),
    ],
)
def test_date_times(text, ok):
    assert (parse_datetime(text) is not None) == ok
