"""``--open-web-ui``: open the operator UI in the user's browser once the listener is up.

The opener is ``$BROWSER`` when set (the first entry of the colon-separated list; ``%s`` is
replaced by the URL, else the URL is appended), otherwise the platform's own: ``open`` on
macOS, ``xdg-open`` elsewhere. It runs detached, with no terminal input and its output
discarded, so a text-mode browser cannot take over the daemon's terminal; a missing or
failing opener is one warning, never a reason to stop.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping

log = logging.getLogger("tunnel_client.adminui")


def opener_argv(url: str, env: Mapping[str, str], platform: str = sys.platform) -> list[str]:
    """The command that opens ``url``."""
    browser = env.get("BROWSER", "").split(":")[0].strip()
    if browser:
        argv = shlex.split(browser)
        if any("%s" in a for a in argv):
            return [a.replace("%s", url) for a in argv]
        return [*argv, url]
    return ["open", url] if platform == "darwin" else ["xdg-open", url]


def open_ui(url: str, env: Mapping[str, str]) -> bool:
    """Start the opener for ``url``; True when it could be started (its own outcome is not awaited)."""
    argv = opener_argv(url, env)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, env=dict(env))
    except OSError as exc:
        log.warning("cannot open the web UI in a browser; open it yourself",
                    extra={"ui_url": url, "opener": argv[0], "error": exc.strerror or type(exc).__name__})
        return False
    # Reap the opener when it exits (xdg-open returns at once; $BROWSER may be the browser itself).
    threading.Thread(target=proc.wait, name="web-ui-opener", daemon=True).start()
    log.info("opening the web UI in a browser", extra={"ui_url": url, "opener": argv[0]})
    return True
