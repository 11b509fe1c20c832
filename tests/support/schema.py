"""Validators for the OpenAPI component schemas of the tunnel wire contract (tests/fixtures/openapi.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@cache
def openapi() -> dict[str, Any]:
    doc: dict[str, Any] = load_fixture("openapi.json")
    return doc


@cache
def component_validator(name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<name>``; ``$ref`` resolves inside the OpenAPI document."""
    schemas = openapi()["components"]["schemas"]
    assert name in schemas, f"no component schema {name}"
    schema = {"$ref": f"#/components/schemas/{name}", "components": openapi()["components"]}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def tunnel_failure_validator() -> Draft202012Validator:
    """The nested provenance schema published at resp_json's ``x-tunnel-failure-schema``."""
    schema = openapi()["components"]["schemas"]["TunnelResponsePayload"]["properties"]["resp_json"][
        "x-tunnel-failure-schema"]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(name: str, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in component_validator(name).iter_errors(instance)]


def assert_valid_response_payload(payload: dict[str, Any]) -> None:
    """A TunnelResponsePayload as sent on the wire, including any nested tunnel_failure."""
    errors = schema_errors("TunnelResponsePayload", payload)
    assert not errors, f"payload does not match TunnelResponsePayload: {errors}\n{payload}"
    failure = tunnel_failure_of(payload)
    if failure is not None:
        errs = [e.message for e in tunnel_failure_validator().iter_errors(failure)]
        assert not errs, f"tunnel_failure does not match x-tunnel-failure-schema: {errs}\n{failure}"


def tunnel_failure_of(payload: dict[str, Any]) -> Any:
    resp = payload.get("resp_json")
    if not isinstance(resp, dict):
        return None
    err = resp.get("error")
    data = err.get("data") if isinstance(err, dict) else None
    return data.get("tunnel_failure") if isinstance(data, dict) else None
