"""Helpers for the observability tests: a headless Chromium driven over the DevTools protocol,
support-bundle unpacking and small waits.

The browser is Debian's ``/usr/bin/chromium`` (installed by ``.ci/run``), started headless with
a throw-away profile, no background networking and a host resolver that resolves nothing, so
it can only reach the 127.0.0.1 listener under test. It is driven with plain CDP messages over
the aiohttp websocket client (no extra test dependency, no browser download).
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc

from tests.support.proc import wait_until  # noqa: F401 - re-exported for the tests

CHROMIUM = os.environ.get("TUNNEL_TEST_CHROMIUM", "/usr/bin/chromium")
WAIT = 15.0
REPO = Path(__file__).resolve().parents[2]
# Screenshots land in docs/images/ only when asked (UPDATE_DOC_SCREENSHOTS=1), so an ordinary
# test run leaves the checkout clean; otherwise they go to a scratch directory.
DOC_IMAGES = (REPO / "docs" / "images" if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1"
              else Path(tempfile.mkdtemp(prefix="tc-ui-shots-")))


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def chromium_argv(profile: Path) -> list[str]:
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
        "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
        "--disable-client-side-phishing-detection", "--disable-domain-reliability", "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        # Belt and braces: no name resolves, so nothing but the 127.0.0.1 listener is reachable.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        "--window-size=1280,860", "--hide-scrollbars", "--force-device-scale-factor=1",
        "about:blank",
    ]


class CDPError(RuntimeError):
    pass


@dataclass
class Page:
    """One browser tab, attached with a flat CDP session."""

    ws: aiohttp.ClientWebSocketResponse
    session_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        """Send one command and read messages until its answer arrives (events are kept in ``events``)."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if not browser and self.session_id:
            msg["sessionId"] = self.session_id
        await self.ws.send_str(json.dumps(msg))
        with anyio.fail_after(WAIT):
            while True:
                raw = await self.ws.receive()
                if raw.type != aiohttp.WSMsgType.TEXT:
                    raise CDPError(f"devtools connection ended ({raw.type.name}) waiting for {method}")
                data = json.loads(raw.data)
                if data.get("id") == msg_id:
                    if "error" in data:
                        raise CDPError(f"{method}: {data['error']}")
                    return data.get("result", {})
                if "method" in data:
                    self.events.append(data)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
        })
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = WAIT) -> None:
        """Re-evaluate ``expression`` in the page until it is truthy (in JavaScript's sense); the wait is capped."""
        deadline = time.monotonic() + timeout
        while True:
            if await self.evaluate(f"Boolean({expression})"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"browser: timed out waiting for {what} ({expression})")
            await anyio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", f"{url} to load")

    async def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (scrolled into view first)."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        if not box:
            raise AssertionError(f"browser: no element {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {
                "type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1})

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        target = anyio.Path(path)
        await target.parent.mkdir(parents=True, exist_ok=True)
        await target.write_bytes(base64.b64decode(data["data"]))
        return path

    def page_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error log entries (e.g. CSP violations) so far."""
        out = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append("log: " + str(params["entry"].get("text")))
        return out


async def _devtools_endpoint(profile: Path, proc: anyio.abc.Process) -> str:
    marker = anyio.Path(profile / "DevToolsActivePort")
    with anyio.fail_after(WAIT):
        while True:  # chromium gives no other signal that its devtools port is open
            if proc.returncode is not None:
                raise AssertionError(f"chromium exited early with {proc.returncode}")
            if await marker.is_file():
                lines = (await marker.read_text()).splitlines()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
            await anyio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_page(workdir: Path, *, width: int = 1280, height: int = 860) -> AsyncIterator[Page]:
    """Start headless Chromium and yield one attached, enabled tab; the browser is stopped afterwards."""
    profile = workdir / "chromium-profile"
    await anyio.Path(profile).mkdir(parents=True, exist_ok=True)
    log_file = await anyio.to_thread.run_sync((workdir / "chromium.log").open, "wb")
    proc = await anyio.open_process(chromium_argv(profile), stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=log_file, start_new_session=True)
    try:
        endpoint = await _devtools_endpoint(profile, proc)
        async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as ws:
            page = Page(ws)
            target = await page.send("Target.createTarget", {"url": "about:blank"}, browser=True)
            attached = await page.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                       browser=True)
            page.session_id = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            await page.send("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            yield page
            with contextlib.suppress(CDPError, TimeoutError, aiohttp.ClientError):
                await page.send("Browser.close", browser=True)
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.terminate()
                with anyio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await proc.aclose()
            log_file.close()
            await anyio.to_thread.run_sync(shutil.rmtree, profile, True)


# ---------------------------------------------------------------------------- bundles and waits


def unpack_bundle(data: bytes) -> dict[str, bytes]:
    """tar.gz bytes -> {member name: contents}."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            f = tar.extractfile(member)
            if f is not None:
                out[member.name] = f.read()
    return out
