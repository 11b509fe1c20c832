"""WWW-Authenticate ``resource_metadata`` parsing/replacement and the tunnel service's URL rewriting."""

from __future__ import annotations

import pytest

from tunnel_core.wire.challenge import replace_resource_metadata, require_absolute, resource_metadata_url
from tunnel_core.wire.prmd import front_door_url, prmd_url, rewrite_prmd, rewrite_www_authenticate

TID = "tunnel_" + "a" * 32
BASE = "https://tunnel.example"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Bearer resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"',
         "https://h/.well-known/oauth-protected-resource/mcp"),
        ("Bearer resource_metadata=https://h/prm", "https://h/prm"),
        ('bearer realm="a, b", RESOURCE_METADATA = "https://h/prm", scope="x y"', "https://h/prm"),
        ('Basic realm="x", Bearer error="invalid_token", resource_metadata="https://h/prm"', "https://h/prm"),
        ('Basic resource_metadata="https://basic/prm"', ""),  # only Bearer challenges count
        ('Bearer realm="resource_metadata=\\"https://not/this\\""', ""),
        ('Bearer resource_metadata="https://h/a\\"b"', 'https://h/a"b'),
        ("", ""),
        ("Bearer", ""),
    ],
)
def test_resource_metadata_of_the_bearer_challenge(header: str, expected: str) -> None:
    assert resource_metadata_url(header) == expected


@pytest.mark.parametrize("url", ["/relative", "ftp://h/x", "https://u:p@h/x", "https://h/x#frag", "https:///x"])
def test_resource_metadata_must_be_an_absolute_clean_url(url: str) -> None:
    with pytest.raises(ValueError):
        require_absolute(url)


def test_replace_keeps_everything_but_the_resource_metadata_value() -> None:
    header = 'Basic realm="x", Bearer error="invalid_token", resource_metadata=https://private/prm, scope="read"'
    out = replace_resource_metadata(header, "https://t/.well-known/x")
    assert out == 'Basic realm="x", Bearer error="invalid_token", resource_metadata="https://t/.well-known/x", scope="read"'
    assert replace_resource_metadata('Bearer realm="x"', "https://t") == 'Bearer realm="x"'
    assert replace_resource_metadata('Basic resource_metadata="a"', "https://t") == 'Basic resource_metadata="a"'


def test_tunnel_urls_for_one_tunnel_id() -> None:
    assert front_door_url(BASE + "/", TID) == f"{BASE}/v1/mcp/{TID}"
    assert prmd_url(BASE, TID) == f"{BASE}/.well-known/oauth-protected-resource/v1/mcp/{TID}"


def test_prmd_resource_is_rewritten_and_nothing_else() -> None:
    doc = {"resource": "http://10.0.0.5/mcp", "authorization_servers": ["http://10.0.0.5"], "scopes_supported": ["a"]}
    out = rewrite_prmd(doc, BASE, TID)
    assert out == {**doc, "resource": f"{BASE}/v1/mcp/{TID}"}
    assert doc["resource"] == "http://10.0.0.5/mcp"  # input untouched


def test_www_authenticate_points_at_the_tunnel_prmd() -> None:
    header = 'Bearer resource_metadata="http://10.0.0.5/.well-known/oauth-protected-resource/mcp"'
    assert rewrite_www_authenticate(header, BASE, TID) == f'Bearer resource_metadata="{prmd_url(BASE, TID)}"'
