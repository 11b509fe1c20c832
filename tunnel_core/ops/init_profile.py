"""``init``: write a first profile from a sample, checked end to end, and say what to run next."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from pydantic import BaseModel

from tunnel_core.errors import ConfigError
from tunnel_core.ops.pages import SETUP_PAGES, connector_note
from tunnel_core.ops.preflight import preflight_stdio_command
from tunnel_core.ops.profiles import profile_path, resolve_dir, validate_profile_text, write_profile_file
from tunnel_core.ops.samples import (
    DEFAULT_SAMPLE,
    SampleRequest,
    check_key_ref,
    check_tunnel_id,
    default_sample,
    find_sample,
    normalize_request,
    render_sample,
)


class SetupPageRef(BaseModel):
    label: str
    url: str


class InitResult(BaseModel):
    profile: str
    path: str
    sample: str
    replaced: bool
    tunnel_id: str
    control_plane_base_url: str
    api_key_ref: str
    mcp_target_kind: str  # "http" or "stdio"
    mcp_target: str
    mcp_command_resolved: str = ""
    health_listen_addr: str
    next: list[str]
    setup_pages: list[SetupPageRef]
    connector_note: str


def init_profile(
    request: SampleRequest,
    *,
    env: Mapping[str, str],
    profile: str = DEFAULT_SAMPLE,
    sample: str = "",
    profile_dir: str | None = None,
    force: bool = False,
) -> InitResult:
    """Render, validate and write ``<profile dir>/<profile>.yaml``; nothing is written if any check fails.

    Order: tunnel id, key reference, sample choice and inputs, strict load of the
    rendered text, stdio preflight, then the (exclusive unless ``force``) atomic write.
    """
    check_tunnel_id(request.tunnel_id)
    check_key_ref(request.api_key_ref)
    name = (profile or DEFAULT_SAMPLE).strip()
    chosen = find_sample(sample.strip() or default_sample(request.mcp_server_url, request.mcp_command)).name
    directory = resolve_dir(profile_dir, env)
    path = profile_path(name, directory)
    clean = normalize_request(find_sample(chosen), request)
    text = render_sample(chosen, clean)
    validate_profile_text(text, source=str(path))
    resolved = ""
    if clean.mcp_command:
        try:
            resolved = preflight_stdio_command(clean.mcp_command, env)
        except ConfigError as exc:
            raise ConfigError(f"--mcp-command preflight failed: {exc}") from None
    replaced = write_profile_file(path, text, force=force)

    selector = f"--profile {shlex.quote(name)}"
    if profile_dir:
        selector += f" --profile-dir {shlex.quote(profile_dir)}"
    run_cmd = f"tunnel-client run {selector}"
    return InitResult(
        profile=name,
        path=str(path),
        sample=chosen,
        replaced=replaced,
        tunnel_id=clean.tunnel_id,
        control_plane_base_url=clean.base_url.rstrip("/") + clean.url_path,
        api_key_ref=clean.api_key_ref,
        mcp_target_kind="http" if clean.mcp_server_url else "stdio",
        mcp_target=clean.mcp_server_url or clean.mcp_command,
        mcp_command_resolved=resolved,
        health_listen_addr=clean.health_listen_addr,
        next=[f"tunnel-client doctor {selector}", run_cmd],
        setup_pages=[SetupPageRef(label=p.label, url=p.url) for p in SETUP_PAGES],
        connector_note=connector_note(run_cmd),
    )
