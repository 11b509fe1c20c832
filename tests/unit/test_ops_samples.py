"""Built-in samples: every rendering loads with the strict loader; inputs are checked; keys never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunnel_core.config.settings import load_settings
from tunnel_core.config.yamlfile import parse_config_text
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.ops import samples
from tunnel_core.ops.samples import SampleRequest, render_sample, render_template

TID = "tunnel_" + "a1" * 16
URL = "http://127.0.0.1:3001/mcp"
CMD = 'python "/srv/my server.py" --stdio'

RENDERINGS = [
    ("sample_mcp_with_dcr", {"mcp_server_url": URL}, "http"),
    ("sample_mcp_with_dcr", {"mcp_command": CMD}, "stdio"),
    ("sample_mcp_stdio_local", {"mcp_command": CMD}, "stdio"),
    ("sample_mcp_remote_no_auth", {"mcp_server_url": URL}, "http"),
    ("sample_mcp_enterprise_proxy", {"mcp_server_url": URL}, "http"),
    ("sample_mcp_enterprise_proxy", {"mcp_command": CMD}, "stdio"),
]


@pytest.mark.parametrize(("name", "target", "kind"), RENDERINGS)
@pytest.mark.parametrize("url_path", ["", "/tunnels"])
def test_every_rendered_sample_loads_with_the_runtime_loader(
    tmp_path: Path, name: str, target: dict[str, str], kind: str, url_path: str
) -> None:
    req = SampleRequest.model_validate(
        {"tunnel_id": TID, "url_path": url_path, "health_listen_addr": "127.0.0.1:0", **target}
    )
    text = render_sample(name, req)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    settings = load_settings({"config": str(path)}, {"CONTROL_PLANE_API_KEY": "k_1"})
    assert settings.tunnel_id == TID
    assert settings.url_path == url_path
    assert settings.api_key_source == "env:CONTROL_PLANE_API_KEY"
    main = settings.binding("main")
    assert main is not None and main.kind == kind
    if kind == "stdio":
        assert main.argv == ("python", "/srv/my server.py", "--stdio")
    else:
        assert main.url == URL


@pytest.mark.parametrize("info", samples.list_samples(), ids=lambda s: s.name)
def test_show_renders_example_that_parses_strictly(info: samples.SampleInfo) -> None:
    detail = samples.show_sample(info.name)
    cfg = parse_config_text(detail.yaml, source="example")
    assert cfg.config_version == 1
    assert detail.summary and detail.use_when and detail.required and detail.optional and detail.notes
    assert "env:CONTROL_PLANE_API_KEY" in detail.yaml


def test_enterprise_sample_routes_through_proxy_and_ca_bundle() -> None:
    text = render_sample("sample_mcp_enterprise_proxy", SampleRequest(tunnel_id=TID, mcp_server_url=URL))
    data = yaml.safe_load(text)
    assert data["http_proxy"] == "env:HTTPS_PROXY"
    assert data["ca_bundle"] == "env:ENTERPRISE_CA_BUNDLE"


def test_quoting_survives_yaml_special_characters() -> None:
    cmd = "node server.js --name 'a: b' \"#not-a-comment\""
    text = render_sample("sample_mcp_stdio_local", SampleRequest(tunnel_id=TID, mcp_command=cmd))
    assert yaml.safe_load(text)["mcp"]["commands"][0]["command"] == cmd


def test_sample_names_are_the_reference_four() -> None:
    assert samples.sample_names() == [
        "sample_mcp_enterprise_proxy", "sample_mcp_remote_no_auth", "sample_mcp_stdio_local", "sample_mcp_with_dcr",
    ]


@pytest.mark.parametrize(
    ("url", "cmd", "expected"),
    [
        ("", "python s.py", "sample_mcp_stdio_local"),
        (URL, "", "sample_mcp_with_dcr"),
        (URL, "python s.py", "sample_mcp_with_dcr"),
        ("", "", "sample_mcp_with_dcr"),
    ],
)
def test_default_sample_choice(url: str, cmd: str, expected: str) -> None:
    assert samples.default_sample(url, cmd) == expected


@pytest.mark.parametrize(
    ("name", "req", "message"),
    [
        ("sample_mcp_with_dcr", {"mcp_server_url": URL}, "--tunnel-id is required"),
        ("sample_mcp_with_dcr", {"tunnel_id": "tunnel_ABC", "mcp_server_url": URL}, "is not a tunnel id"),
        ("sample_mcp_with_dcr", {"tunnel_id": TID}, "exactly one of --mcp-server-url"),
        ("sample_mcp_with_dcr", {"tunnel_id": TID, "mcp_server_url": URL, "mcp_command": "x"}, "exactly one of"),
        ("sample_mcp_stdio_local", {"tunnel_id": TID, "mcp_server_url": URL}, "needs --mcp-command"),
        ("sample_mcp_remote_no_auth", {"tunnel_id": TID, "mcp_command": "x"}, "needs --mcp-server-url"),
        ("sample_mcp_remote_no_auth", {"tunnel_id": TID, "mcp_server_url": "localhost:3001/mcp"},
         "--mcp-server-url: 'localhost:3001/mcp' is not an absolute http(s) URL"),
        ("sample_mcp_remote_no_auth", {"tunnel_id": TID, "mcp_server_url": URL, "url_path": "v1x"},
         "--control-plane-url-path"),
        ("sample_mcp_remote_no_auth", {"tunnel_id": TID, "mcp_server_url": URL, "health_listen_addr": "8080"},
         "--health-listen-addr"),
        ("sample_mcp_remote_no_auth", {"tunnel_id": TID, "mcp_server_url": URL, "api_key_ref": "env:1BAD"},
         "does not name an environment variable"),
    ],
)
def test_bad_inputs_name_the_flag(name: str, req: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render_sample(name, SampleRequest.model_validate(req))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("raw", ["sk-" + "proj-abcdef0123456789", "rk_live_secret_value", "Bearer xyz"])
def test_raw_key_is_refused_without_echo(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        samples.check_key_ref(raw)
    assert raw not in str(err.value)
    assert "env:CONTROL_PLANE_API_KEY" in str(err.value)


@pytest.mark.parametrize("ref", ["env:CONTROL_PLANE_API_KEY", "env:_X1", "file:/run/secrets/key", "file:~/k"])
def test_references_are_accepted(ref: str) -> None:
    assert samples.check_key_ref(ref) == ref


def test_unknown_sample_lists_the_choices() -> None:
    with pytest.raises(UsageError) as err:
        samples.find_sample("sample_nope")
    assert "sample_mcp_stdio_local" in str(err.value)


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("a: {{ x }}\n", {"x": "v"}, 'a: "v"\n'),
        ("a: {{x}}\n", {"x": True}, "a: true\n"),
        ("{% if x %}\nyes\n{% else %}\nno\n{% endif %}\n", {"x": ""}, "no\n"),
        ("{% if x %}\nyes\n{% else %}\nno\n{% endif %}\n", {"x": "1"}, "yes\n"),
        ("k: {{ x }}\n", {"x": 'say "hi"\n'}, 'k: "say \\"hi\\"\\n"\n'),
    ],
)
def test_template_rendering(template: str, values: dict[str, object], expected: str) -> None:
    assert render_template(template, values) == expected


def test_template_rejects_unterminated_block() -> None:
    with pytest.raises(ValueError):
        render_template("{% if x %}\nyes\n", {"x": "1"})
