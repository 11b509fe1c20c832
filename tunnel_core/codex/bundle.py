"""The Codex plugin bundle: models of its files, where its sources live, and the installed rendering.

The sources are ``plugin_manifest/`` (``.codex-plugin/plugin.json``, ``.mcp.json``, README)
and ``skills/`` (``tunnel-client/SKILL.md`` plus references) at the top of a checkout, or
``tunnel_core/_bundle/{plugin_manifest,skills}`` inside an installed wheel. ``BUNDLE_FILES``
is the complete list; a file on disk that is not in it (or the reverse) fails validation,
and so does any file that does not match its model. The installed ``.mcp.json`` is
rendered so that Codex starts *this* installation's interpreter with ``-m agent_tools``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import tunnel_core
from tunnel_core.errors import ConfigError

PLUGIN_NAME = "tunnel-client"
MCP_SERVER_NAME = "tunnel-client"
SKILL_NAME = "tunnel-client"
DEFAULT_MARKETPLACE = "debug"
LEGACY_PLUGIN_NAMES = ("tunnel-mcp",)  # the reference implementation's plugin
BINARY_HINT_FILE = ".tunnel-client-bin"
SERVER_MODULE = "agent_tools"

# Tools that only read; ``codex plugin install --approve-tools read-only`` pre-approves these
# (a test keeps the list equal to the read-only tools of agent_tools).
READ_ONLY_TOOLS = ("help", "install_or_select_tunnel_client", "doctor", "runtime_status", "list_runtime_aliases")

SKILL_REFERENCES = ("setup.md", "runtimes.md", "keys-and-state.md", "admin-tunnels.md", "troubleshooting.md")

# Variables the plugin's MCP server needs from Codex's environment. Codex starts plugin
# servers with only HOME, PATH, SHELL, LANG, TERM and a few CA settings, so anything an
# env: reference or the state/profile resolution reads must be listed here.
FORWARDED_ENV = (
    "CONTROL_PLANE_API_KEY", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY",
    "CONTROL_PLANE_BASE_URL", "CONTROL_PLANE_URL_PATH", "CA_BUNDLE",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
    "TUNNEL_CLIENT_STATE_DIR", "TUNNEL_CLIENT_PROFILE_DIR", "TUNNEL_MCP_ADMIN_PROFILE",
    "XDG_CONFIG_HOME", "XDG_STATE_HOME", "CODEX_HOME", "TMPDIR",
)


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of the bundle: where it goes in the plugin root and where its source is."""

    dest: str
    source_root: Literal["plugin_manifest", "skills"]
    source: str


BUNDLE_FILES: tuple[BundleFile, ...] = (
    BundleFile(".codex-plugin/plugin.json", "plugin_manifest", ".codex-plugin/plugin.json"),
    BundleFile(".mcp.json", "plugin_manifest", ".mcp.json"),
    BundleFile("README.md", "plugin_manifest", "README.md"),
    BundleFile(f"skills/{SKILL_NAME}/SKILL.md", "skills", f"{SKILL_NAME}/SKILL.md"),
    *(BundleFile(f"skills/{SKILL_NAME}/references/{r}", "skills", f"{SKILL_NAME}/references/{r}")
      for r in SKILL_REFERENCES),
)

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION_RE = r"^[A-Za-z0-9._+-]+$"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _relative(value: str) -> str:
    if not value.startswith("./") or ".." in Path(value).parts:
        raise ValueError(f"{value!r} must start with ./ and stay inside the plugin root")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PluginAuthor(_Strict):
    name: str = Field(min_length=1)
    url: str = ""


class PluginInterface(_Strict):
    """``interface`` of plugin.json: what Codex shows in its plugin UI."""

    display_name: str = Field(alias="displayName", min_length=1)
    short_description: str = Field(alias="shortDescription", min_length=1, max_length=200)
    long_description: str = Field(alias="longDescription", min_length=1)
    developer_name: str = Field(alias="developerName", min_length=1)
    category: str = Field(min_length=1)
    capabilities: list[Literal["Interactive", "Read", "Write", "Shell"]]
    website_url: str = Field(alias="websiteURL", pattern=r"^https://")
    default_prompt: list[str] = Field(alias="defaultPrompt", min_length=1, max_length=3)
    brand_color: str = Field(alias="brandColor", pattern=r"^#[0-9A-Fa-f]{6}$")

    @field_validator("default_prompt")
    @classmethod
    def _short_prompts(cls, prompts: list[str]) -> list[str]:
        for p in prompts:
            if len(" ".join(p.split())) > 128:
                raise ValueError(f"default prompt longer than 128 characters: {p!r}")
        return prompts


class PluginManifest(_Strict):
    """``.codex-plugin/plugin.json``."""

    name: str = Field(pattern=_NAME_RE)
    version: str = Field(pattern=_VERSION_RE)
    description: str = Field(min_length=1)
    author: PluginAuthor
    homepage: str
    repository: str
    license: str
    keywords: list[str]
    skills: str
    mcp_servers: str = Field(alias="mcpServers")
    interface: PluginInterface

    _rel_skills = field_validator("skills")(_relative)
    _rel_mcp = field_validator("mcp_servers")(_relative)


class McpServerSpec(_Strict):
    """One server of ``.mcp.json`` (the keys of ``[mcp_servers.NAME]`` in config.toml, stdio form)."""

    command: str = Field(min_length=1)
    args: list[str]
    cwd: str = "."
    env_vars: list[str]
    startup_timeout_sec: int = Field(ge=1, le=600)
    tool_timeout_sec: int = Field(ge=1, le=3600)

    @field_validator("env_vars")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not _ENV_NAME_RE.match(n)]
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        return names


class McpConfig(_Strict):
    """``.mcp.json``."""

    mcp_servers: dict[str, McpServerSpec] = Field(alias="mcpServers")


class SkillMetadata(_Strict):
    short_description: str = Field(alias="short-description", min_length=1, max_length=1024)


class SkillFrontMatter(_Strict):
    """The YAML front matter of ``SKILL.md`` (the description is what the model sees in the catalog)."""

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=200, max_length=1024)
    metadata: SkillMetadata | None = None


class MarketplacePluginSource(_Strict):
    source: Literal["local"] = "local"
    path: str


class MarketplacePolicy(_Strict):
    installation: Literal["AVAILABLE", "NOT_AVAILABLE", "INSTALLED_BY_DEFAULT"] = "AVAILABLE"
    authentication: Literal["ON_INSTALL", "ON_USE"] = "ON_INSTALL"


class MarketplaceEntry(_Strict):
    name: str = Field(pattern=_NAME_RE)
    source: MarketplacePluginSource
    policy: MarketplacePolicy = MarketplacePolicy()
    category: str = "Developer Tools"


class MarketplaceInterface(_Strict):
    display_name: str = Field(alias="displayName")


class MarketplaceManifest(_Strict):
    """``<root>/.agents/plugins/marketplace.json`` for the official install route."""

    name: str = Field(pattern=_NAME_RE)
    interface: MarketplaceInterface
    plugins: list[MarketplaceEntry]


@dataclass(frozen=True, slots=True)
class Launch:
    """How Codex starts the plugin's MCP server."""

    command: str
    args: tuple[str, ...]


def current_launch() -> Launch:
    """This installation's interpreter running the agent tool server.

    ``sys.executable`` is kept as is (not symlink-resolved): a virtualenv's ``python`` is a
    symlink to the base interpreter, and resolving it would lose the environment.
    """
    return Launch(command=sys.executable, args=("-m", SERVER_MODULE))


def current_entry_point() -> str:
    """The ``tunnel-client`` console script of this installation, or "" when there is none."""
    script = Path(sys.executable).parent / "tunnel-client"
    return str(script) if script.is_file() else ""


def source_root(name: Literal["plugin_manifest", "skills"]) -> Path:
    """The source directory of one half of the bundle (wheel data first, then the checkout)."""
    package = Path(tunnel_core.__file__).resolve().parent
    for candidate in (package / "_bundle" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"the Codex plugin sources ({name}/) are missing from this installation at {package}; "
                      "reinstall tunnel-client")


def _source_path(f: BundleFile) -> Path:
    return source_root(f.source_root) / f.source


def stray_files() -> list[str]:
    """Files under the bundle sources that ``BUNDLE_FILES`` does not list (a drift, reported by validation)."""
    known = {(f.source_root, f.source) for f in BUNDLE_FILES}
    out: list[str] = []
    for root_name in ("plugin_manifest", "skills"):
        root = source_root(root_name)  # type: ignore[arg-type]
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = p.relative_to(root).as_posix()
                if (root_name, rel) not in known:
                    out.append(f"{root_name}/{rel}")
    return out


def parse_front_matter(text: str, source: str) -> tuple[SkillFrontMatter, str]:
    """Split ``SKILL.md`` into its validated front matter and body."""
    if not text.startswith("---\n"):
        raise ConfigError(f"{source}: must start with a '---' YAML front matter block")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ConfigError(f"{source}: the front matter block is not closed with '---'")
    try:
        data = yaml.safe_load(text[4:end])
        return SkillFrontMatter.model_validate(data), text[end + 5:]
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{source}: invalid front matter: {exc}") from None


@dataclass(frozen=True, slots=True)
class Bundle:
    """The validated bundle sources."""

    manifest: PluginManifest
    mcp: McpConfig
    skill: SkillFrontMatter
    files: dict[str, bytes]

    def render(self, launch: Launch | None = None) -> dict[str, bytes]:
        """Every file as installed: ``.mcp.json`` launches ``launch`` (default: this installation)."""
        launch = launch or current_launch()
        servers: dict[str, Any] = {}
        for name, spec in self.mcp.mcp_servers.items():
            entry = spec.model_dump()
            if name == MCP_SERVER_NAME:
                entry.update(command=launch.command, args=list(launch.args))
            servers[name] = entry
        out = dict(self.files)
        out[".mcp.json"] = (json.dumps({"mcpServers": servers}, indent=2) + "\n").encode()
        return out


def _validated(model: type[BaseModel], raw: bytes, source: str) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: does not match the {model.__name__} model: {exc}") from None


def load_bundle() -> Bundle:
    """Read and validate every bundle source; raise ConfigError naming the first problem."""
    files: dict[str, bytes] = {}
    for f in BUNDLE_FILES:
        path = _source_path(f)
        try:
            files[f.dest] = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"Codex plugin file {path}: cannot read it ({exc.strerror})") from None
    strays = stray_files()
    if strays:
        raise ConfigError(f"files in the plugin sources that the bundle does not list: {', '.join(strays)}")
    manifest: PluginManifest = _validated(PluginManifest, files[".codex-plugin/plugin.json"], "plugin.json")
    mcp: McpConfig = _validated(McpConfig, files[".mcp.json"], ".mcp.json")
    skill, _ = parse_front_matter(files[f"skills/{SKILL_NAME}/SKILL.md"].decode(), "SKILL.md")
    if manifest.name != PLUGIN_NAME:
        raise ConfigError(f"plugin.json: name is {manifest.name!r}, expected {PLUGIN_NAME!r}")
    if manifest.version != tunnel_core.__version__:
        raise ConfigError(f"plugin.json: version {manifest.version} differs from tunnel-client "
                          f"{tunnel_core.__version__}")
    if MCP_SERVER_NAME not in mcp.mcp_servers:
        raise ConfigError(f".mcp.json: no {MCP_SERVER_NAME!r} server")
    if skill.name != SKILL_NAME:
        raise ConfigError(f"SKILL.md: name is {skill.name!r}, expected {SKILL_NAME!r}")
    return Bundle(manifest=manifest, mcp=mcp, skill=skill, files=files)
