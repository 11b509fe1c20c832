"""Alias normalisation, key-reference rules and inline-secret detection of the runtime state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.state.refs import (
    is_secret_reference,
    normalize_alias,
    reference_available,
    reject_inline_secret_material,
    validate_secret_reference,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("demo", "demo"),
        ("My_Demo", "my-demo"),
        ("  spaced out  ", "spaced-out"),
        ("a__b--c", "a-b-c"),
        ("--edge--", "edge"),
        ("ünïcode!", "n-code"),
        ("prod.eu/1", "prod-eu-1"),
    ],
)
def test_alias_normalisation(raw: str, expected: str) -> None:
    assert normalize_alias(raw) == expected


@pytest.mark.parametrize("raw", ["", "---", "!!!", "__"])
def test_alias_without_letters_or_digits_is_refused(raw: str) -> None:
    with pytest.raises(UsageError, match="at least one ASCII letter or number"):
        normalize_alias(raw)


@pytest.mark.parametrize("ref", ["env:OPENAI_ADMIN_KEY", "env:_X1", "file:/run/secrets/key", "file:~/key"])
def test_valid_references_pass(ref: str) -> None:
    assert validate_secret_reference(ref, "--admin-key") == ref


@pytest.mark.parametrize("ref", ["sk-admin-123", "env:", "env:1BAD", "env:A-B", "file:", "OPENAI_ADMIN_KEY", ""])
def test_literal_or_malformed_references_are_refused_without_echoing_them(ref: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_secret_reference(ref, "--admin-key")
    assert "--admin-key" in str(info.value)
    if ref.startswith("sk-"):
        assert ref not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "https://user:pass@mcp.example.com/mcp",
        "https://mcp.example.com/mcp?api_key=abc123",
        "npx server --api-key literalvalue123",
        "server --token abcdef",
        "env OPENAI_API_KEY=sk-abc server",
        "curl -H 'Authorization: Bearer abcdefabcdefabcdef'",
        "run sk-" + "abcdefghijklmnopqrst",
        "server --password=hunter2",
    ],
)
def test_inline_secret_material_is_rejected(value: str) -> None:
    with pytest.raises(UsageError, match="inline secret material") as info:
        reject_inline_secret_material(value, "mcp command")
    assert value not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "https://mcp.example.com/mcp",
        "python server.py --port 8080",
        "server --api-key env:MY_KEY",
        "server --token $TOKEN",
        "server --secret-file /run/key --verbose",
        "server --token-file /run/token --token-env MY_TOKEN",
        "npx -y @modelcontextprotocol/server-everything",
    ],
)
def test_targets_without_literal_secrets_are_accepted(value: str) -> None:
    reject_inline_secret_material(value, "mcp command")


def test_reference_shapes() -> None:
    assert is_secret_reference("env:X") and is_secret_reference("${X}") and is_secret_reference("$X")
    assert not is_secret_reference("literal")


def test_reference_availability_reports_why_without_values(tmp_path: Path) -> None:
    assert reference_available("env:K", {"K": "value"}) == (True, "")
    assert reference_available("env:K", {"K": "  "}) == (False, "environment variable K is not set")
    empty = tmp_path / "empty"
    empty.write_text("")
    assert reference_available(f"file:{empty}", {})[0] is False
    full = tmp_path / "full"
    full.write_text("secret-value")
    assert reference_available(f"file:{full}", {}) == (True, "")
    assert reference_available(f"file:{tmp_path / 'missing'}", {})[1].endswith("does not exist")
    assert reference_available("literal", {})[0] is False
