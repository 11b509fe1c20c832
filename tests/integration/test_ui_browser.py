"""The operator UI in a real browser: headless Debian Chromium against a real ``tunnel-client run``.

The relay forwards calls from the local tunnel service to two targets (the HTTP test MCP server
on ``main`` and the stdio test server on ``local``). The browser opens /ui, must show the tunnel
id, a readiness badge, the relayed calls in Traffic, live charts, the OAuth and Codex states and
the live log stream, and must change the runtime log level through the page. Each tab is saved
as a screenshot into docs/images/, which docs/operator-ui.md shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.support import frontdoor as fd
from tests.support.faulty import STDIO_COMMAND
from tests.support.obs_helpers import DOC_IMAGES, Page, chromium_available, open_page
from tests.support.servers import BackgroundLoop
from tests.support.tunnel import ClientRun, StartClient, TunnelService, new_tunnel_id
from tunnel_core.mcpstub import build_stub_app

# CI installs Debian's chromium (.ci/run); there a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    not chromium_available() and not os.environ.get("CI"), reason="needs Debian chromium (apt-get install chromium)"
)


async def relay_calls(service: TunnelService, run: ClientRun, count: int, channel: str | None = None) -> None:
    url = service.mcp_url(run.tunnel_id, channel)
    async with fd.http_client() as client:
        session = await fd.open_session(client, url)
        for i in range(count):
            args = {"text": f"ui {i}"} if channel else {"input": f"ui {i}"}  # stdio server / demo stub
            resp, msgs = await fd.post(client, url, fd.request("tools/call", {"name": "echo", "arguments": args}),
                                       session)
            assert resp.status_code == 200 and "result" in msgs[-1], resp.text


async def tab(page: Page, name: str, ready: str, shot: str) -> Path:
    await page.click(f'.tabs a[data-tab="{name}"]')
    await page.wait_for(f"!document.querySelector('[data-panel=\"{name}\"]').classList.contains('hidden')",
                        f"the {name} tab to show")
    await page.wait_for(ready, f"{name} content")
    return await page.screenshot(DOC_IMAGES / shot)


@pytest.fixture(scope="module")
def demo_stub(bg: BackgroundLoop) -> Iterator[str]:
    """The demo MCP server (it also publishes OAuth protected-resource metadata), as the main target."""
    server = bg.serve(build_stub_app())
    yield f"{server.url}/mcp"
    server.stop()


@pytest.mark.anyio
async def test_operator_ui_in_a_real_browser(
    start_relay: StartClient, tunnel_service: TunnelService, demo_stub: str, tmp_path: Path
) -> None:
    tunnel_id = new_tunnel_id()
    tunnel_service.loop.call(tunnel_service.broker.add_tunnel, tunnel_id, "billing-tools",
                             "Private MCP servers of the billing team")
    run = start_relay("--mcp.server-url", demo_stub,
                      "--mcp.command", f"channel=local,command={STDIO_COMMAND}", tunnel_id=tunnel_id)
    await anyio.to_thread.run_sync(run.wait_readyz)
    await relay_calls(tunnel_service, run, 2)
    await relay_calls(tunnel_service, run, 1, channel="local")

    async with open_page(tmp_path) as page:
        await page.goto(run.health_url + "/ui")

        # Overview: the tunnel id (server-rendered), the Ready badge refreshed by the page itself.
        assert await page.evaluate("document.getElementById('tunnel-id').textContent") == run.tunnel_id
        await page.wait_for("document.getElementById('tunnel-name').textContent === 'billing-tools'",
                            "the tunnel name from the control plane's metadata")
        await page.wait_for("document.querySelector('#badge-ready').dataset.state === 'ok'", "the Ready badge")
        assert await page.evaluate("document.querySelector('#badge-ready b').textContent") == "ready"
        assert await page.evaluate("document.querySelector('#badge-health b').textContent") == "live"
        await page.wait_for("parseInt(document.getElementById('ov-relayed').textContent) >= 7",
                            "the activity card")
        await page.screenshot(DOC_IMAGES / "ui-overview.png")

        # Channels: both targets probed ok, the stdio child's pid shown.
        await tab(page, "channels", "document.querySelectorAll('#channels-body tr').length === 2 && "
                  "document.querySelector('#channels-body tr[data-channel=\"local\"]').textContent.includes('pid')",
                  "ui-channels.png")

        # Traffic: the relayed tools/call on both channels.
        await tab(page, "traffic", "document.querySelector('#traffic-body tr[data-method=\"tools/call\"]')",
                  "ui-traffic.png")
        rows = await page.evaluate(
            "[...document.querySelectorAll('#traffic-body tr')].map(r => [...r.cells].map(c => c.textContent))")
        calls = [r for r in rows if r[2] == "tools/call"]
        assert {r[1] for r in calls} == {"main", "local"}
        assert all(r[4] == "200" and r[5] == "ok" and r[6].endswith(" ms") for r in calls), calls

        # Metrics: keep calls flowing while the page samples /metrics (every 2 s) until the throughput
        # chart holds three non-zero samples.
        await page.click('.tabs a[data-tab="metrics"]')
        with anyio.fail_after(30):
            while int(await page.evaluate("document.getElementById('chart-throughput').dataset.nonzero || 0")) < 3:
                await relay_calls(tunnel_service, run, 3)
        assert int(await page.evaluate("document.getElementById('chart-latency').dataset.samples")) >= 3
        await page.wait_for("document.querySelector('#counters-body tr[data-metric=\"commands_polled_total\"]')",
                            "the counters table")
        await page.screenshot(DOC_IMAGES / "ui-metrics.png")

        # OAuth: the demo server's protected-resource metadata, discovered at start-up.
        await tab(page, "oauth", "document.getElementById('oauth-state')", "ui-oauth.png")
        assert await page.evaluate("document.getElementById('oauth-state').dataset.key") == "discovered"
        oauth_text = await page.evaluate("document.getElementById('oauth-content').textContent")
        assert demo_stub.removesuffix("/mcp") in oauth_text and "selected" in oauth_text

        # Logs: history plus the live stream; change the runtime level through the page.
        await page.click('.tabs a[data-tab="logs"]')
        await page.wait_for("[...document.querySelectorAll('.log-row')].some(r => "
                            "r.textContent.includes('tunnel-client started'))", "the start-up log record")
        await page.wait_for("document.getElementById('log-view').dataset.stream === 'open'", "the log stream")
        assert await page.evaluate("document.getElementById('level-select').value") == "info"
        await page.evaluate("(() => { const s = document.getElementById('level-select'); s.value = 'debug';"
                            " s.dispatchEvent(new Event('change')); })()")
        await page.click("#level-apply")
        await page.wait_for("document.querySelector('#badge-level b').textContent === 'debug'", "the Logs badge")
        assert await page.evaluate("document.getElementById('log-status').textContent") == "Log level is now debug."
        # The change itself is logged, and arrives through the SSE stream, not a reload.
        await page.wait_for("[...document.querySelectorAll('.log-row')].some(r => "
                            "r.textContent.includes('runtime log level updated'))", "the streamed log record")
        await page.screenshot(DOC_IMAGES / "ui-logs.png")
        level = await anyio.to_thread.run_sync(lambda: run.get("/api/log-level").json())
        assert level == {"level": "debug", "supported_levels": ["debug", "info", "warn"]}
        export = await page.evaluate("fetch(document.getElementById('export-link').href)"
                                     ".then(r => [r.status, r.headers.get('content-type')])")
        assert export == [200, "application/gzip"]

        # Codex: not installed in this HOME, then installed once the plugin files appear.
        await tab(page, "codex", "document.getElementById('codex-card')", "ui-codex-missing.png")
        assert await page.evaluate("document.getElementById('codex-card').dataset.state") in (
            "codex_not_detected", "not_installed")
        install_fake_plugin(tmp_path / ".codex")
        await page.click('.tabs a[data-tab="overview"]')
        await tab(page, "codex", "document.getElementById('codex-card').dataset.state === 'installed'",
                  "ui-codex.png")
        (DOC_IMAGES / "ui-codex-missing.png").unlink()

        assert page.page_errors() == []

    # The page's PUT went through the same-origin check with the browser's own headers.
    records = await anyio.to_thread.run_sync(run.proc.log_records)
    updated = [r for r in records if r["msg"] == "runtime log level updated"]
    assert updated and updated[0]["previous_level"] == "info" and updated[0]["component"] == "adminui"


def install_fake_plugin(codex_home: Path) -> None:
    """What ``codex plugin install`` leaves behind: a cached plugin manifest and an enabled config entry."""
    manifest = codex_home / "plugins/cache/debug/tunnel-client/local/.codex-plugin/plugin.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"name": "tunnel-client", "version": "0.1.0"}))
    (codex_home / "config.toml").write_text('[plugins."tunnel-client@debug"]\nenabled = true\n')


def test_ui_page_is_self_contained(relay: ClientRun) -> None:
    """Nothing on the page comes from elsewhere: every asset is local and the CSP forbids the rest."""
    resp = relay.get("/ui")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "http://" not in resp.text and "https://" not in resp.text
    for asset in ("app.js", "charts.js", "styles.css"):
        body = relay.get(f"/assets/{asset}")
        assert body.status_code == 200, asset
        assert "http://" not in body.text and "https://" not in body.text, asset
    assert relay.get("/assets/../app.py").status_code == 404
    assert httpx2.get(relay.health_url + "/favicon.ico", timeout=5, trust_env=False).status_code == 204
