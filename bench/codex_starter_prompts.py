"""The starter-prompt matrix: each of the plugin's five starter prompts, N runs, quiet and busy.

Every run is a fresh CODEX_HOME and state, real ``codex exec`` and the strict scripted model of
``tests/support/starter_prompts.py`` (it fails when a tool it wants is not in that request's tool
list); the control plane is ``tunnel-client dev tunnel-service``. "busy" keeps one CPU-bound
process per core running meanwhile. Prints, per prompt and condition, the runs that went to the
end and the runs whose first model request already listed the tunnel-client tools.

    .venv/bin/python bench/codex_starter_prompts.py                  # 3 runs, quiet and busy
    .venv/bin/python bench/codex_starter_prompts.py --server agent_tools.server   # the SDK server alone

``--server agent_tools.server`` makes the installed plugin start the SDK server directly (what
Codex started before the stdio front existed), for the before/after comparison.
Not a test: it prints figures for docs/codex.md and the closing notes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.admin_helpers import Keys, tunnel_service  # noqa: E402
from tests.support.fake_model import Say, start_fake_model  # noqa: E402
from tests.support.servers import background_loop  # noqa: E402
from tests.support.starter_prompts import SCENARIOS, Context, PromptRun, run_prompt  # noqa: E402


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--server", default="", help="module the plugin starts instead of the front")
    parser.add_argument("--json", default="", metavar="PATH", help="also write every run as JSON here")
    args = parser.parse_args()
    keys = Keys()
    results: dict[str, list[PromptRun]] = {}
    with tempfile.TemporaryDirectory(prefix="prompts-") as tmp, background_loop() as bg, \
            tunnel_service(Path(tmp) / "service", keys) as service:
        fake = start_fake_model(bg, lambda body: [Say("nothing scripted")])
        ctx = Context(Path(tmp), service, keys, fake)
        try:
            for condition in args.conditions.split(","):
                spinners = []
                if condition == "busy":
                    spinners = [multiprocessing.Process(target=_spin, args=(time.monotonic() + 3600,), daemon=True)
                                for _ in range(os.cpu_count() or 2)]
                    for s in spinners:
                        s.start()
                try:
                    for run in range(args.runs):
                        for name in SCENARIOS:
                            out = run_prompt(ctx, name, Path(tmp) / f"{condition}-{run}-{name}",
                                             server_module=args.server)
                            results.setdefault(f"{name}|{condition}", []).append(out)
                            mark = "ok" if out.ok else "FAIL"
                            print(f"{condition:5} run {run + 1} {name:15} {mark:4} tools in 1st request: "
                                  f"{out.tools_in_first_request!s:5} {out.seconds:6.1f} s"
                                  + ("" if out.ok else f"  {out.problems[0][:120]}"), file=sys.stderr)
                finally:
                    for s in spinners:
                        s.terminate()
        finally:
            assert fake.server is not None
            fake.server.stop()
    conditions = args.conditions.split(",")
    print(f"server: {args.server or 'agent_tools (front)'}; {args.runs} runs per cell; ok / tools in first request")
    print(f"{'prompt':16}" + "".join(f"{c:>18}" for c in conditions))
    for name in SCENARIOS:
        cells = []
        for c in conditions:
            runs = results[f"{name}|{c}"]
            cells.append(f"{sum(r.ok for r in runs)}/{len(runs)} ok, {sum(r.tools_in_first_request for r in runs)}"
                         f"/{len(runs)} 1st")
        print(f"{name:16}" + "".join(f"{cell:>18}" for cell in cells))
    if args.json:
        Path(args.json).write_text(json.dumps({k: [{"ok": r.ok, "tools_in_first_request": r.tools_in_first_request,
                                                     "seconds": r.seconds, "problems": r.problems, "tools": r.tools}
                                                    for r in v] for k, v in results.items()}, indent=2))
    return 0 if all(r.ok for v in results.values() for r in v) else 1


if __name__ == "__main__":
    sys.exit(main())
