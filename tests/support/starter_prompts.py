"""The plugin's five starter prompts, each driven end to end through real ``codex exec``.

For each prompt: a fresh CODEX_HOME (the fake model as provider, the plugin installed with every
tool pre-approved), a fresh state directory with whatever the prompt is about (a tunnel to
connect, runtimes to check, a broken one to diagnose), then ``codex exec`` with the prompt and
the details a user would give. The scripted model is strict (``FakeModel.strict``: it fails when
a tool it wants is not in that request's tool list) and acts only on what results told it: it
follows the ``next`` calls results offer and builds its answer from their fields. ``check``
then verifies the answer and the world: the runtime serves calls through its MCP URL, the
failed one is reported with its cause, and so on.

Used by ``tests/integration/test_codex_starter_prompts.py`` (one run of each) and by
``bench/codex_starter_prompts.py`` (the runs x quiet/busy matrix).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from tests.support.admin_helpers import STDIO_SERVER, Keys, Service, base_env, cli, kill_runtimes
from tests.support.codex_env import ExecRun, codex_search_path, run_exec
from tests.support.fake_model import API_KEY_ENV, Call, FakeModel, Output, Say, Step, history, offered_tools
from tunnel_core.codex.prompts import STARTER_PROMPTS

MCP_COMMAND = f"{sys.executable} {STDIO_SERVER}"
NAMESPACE = "mcp__tunnel_client"
Facts = dict[str, Any]
Plan = Callable[[list[Step], Facts], list[Output]]


@dataclass(slots=True)
class Context:
    workdir: Path
    service: Service
    keys: Keys
    fake: FakeModel


@dataclass(slots=True)
class PromptRun:
    """The outcome of one starter prompt: ``ok`` when Codex, the tools and the answer all did their part."""

    prompt: str
    ok: bool
    problems: list[str]
    tools: list[str]
    tools_in_first_request: bool
    seconds: float
    answer: str
    steps: list[Step] = field(default_factory=list)


def _next(step: Step, tool: str) -> Call | None:
    """The first ``next`` call a result offers for ``tool``, as the model would make it."""
    for n in step.result.get("next") or []:
        if isinstance(n, dict) and n.get("tool") == tool:
            return Call(tool, dict(n.get("arguments") or {}))
    return None


def _follow(steps: list[Step], tool: str) -> list[Output]:
    call = _next(steps[-1], tool)
    if call is None:
        return [Say(f"FAKE MODEL: {steps[-1].name} offered no {tool} call to make next.")]
    return [call]


def _echo(mcp_url: str) -> str:
    """An MCP tools/call through the tunnel's front door; the echoed text."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo",
                                                                          "arguments": {"text": "via codex"}}}
    resp = httpx2.post(mcp_url, json=body, trust_env=False, timeout=30,
                       headers={"Accept": "application/json, text/event-stream"})
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}"
    return str(resp.json().get("result", {}).get("content", [{}])[0].get("text", ""))


def _by(steps: list[Step], tool: str) -> list[Step]:
    return [s for s in steps if s.name == tool]


# ---------------------------------------------------------------------------- 1. connect a tunnel


def _connect_setup(ctx: Context, env: dict[str, str]) -> Facts:
    made = cli(["admin", "--json", "tunnels", "create", "--name", "starter", "--description", "starter prompt",
                "--organization-id", "org_codex"], env)
    assert made.code == 0, made.err
    return {"tunnel_id": made.json()["id"]}


def _connect_details(facts: Facts) -> str:
    return f"Tunnel id: {facts['tunnel_id']}. MCP server command: {MCP_COMMAND}. Call the runtime codex-demo."


def _connect_plan(steps: list[Step], facts: Facts) -> list[Output]:
    connect = Call("connect_stdio_mcp", {"alias": "codex-demo", "tunnel_id": facts["tunnel_id"],
                                         "mcp_command": MCP_COMMAND})
    return _connect_then_status(steps, connect, lambda connected, status: (
        f"Runtime {status.get('alias')}: launched={connected.get('launched')}, state={status.get('state')}, "
        f"healthy={status.get('healthy')}, ready={status.get('ready')}, MCP URL {status.get('mcp_url')}."))


def _connect_then_status(steps: list[Step], connect: Call,
                         say: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[Output]:
    """Connect, make the runtime_status call the result offers, then answer from both results."""
    if not steps:
        return [connect]
    if len(steps) == 1:
        return _follow(steps, "runtime_status")
    return [Say(say(steps[0].result, steps[-1].result))]


def _connect_check(ctx: Context, facts: Facts, run: ExecRun, steps: list[Step]) -> list[str]:
    problems = []
    status = steps[-1].result if steps else {}
    if status.get("state") not in ("ready", "healthy"):
        problems.append(f"runtime state {status.get('state')}: {status.get('reason')}")
    if "launched=True" not in run.answer() or f"state={status.get('state')}" not in run.answer():
        problems.append(f"the answer does not report launched and the state: {run.answer()!r}")
    if status.get("mcp_url") and _echo(status["mcp_url"]) != "via codex":
        problems.append("the tunnel's MCP URL did not reach the MCP server")
    return problems


# ---------------------------------------------------------------------------- 2. check my runtimes


def _check_setup(ctx: Context, env: dict[str, str]) -> Facts:
    up = cli(["runtimes", "--json", "connect", "--alias", "up", "--organization-id", "org_codex", "--mcp-command",
              MCP_COMMAND], env)
    assert up.code == 0, up.err
    gone = cli(["runtimes", "--json", "create", "--alias", "gone", "--organization-id", "org_codex"], env)
    assert gone.code == 0, gone.err
    tunnel = gone.json()["tunnel"]["id"]
    deleted = cli(["admin", "tunnels", "delete", tunnel, "--confirm"], env)
    assert deleted.code == 0, deleted.err
    return {}


def _check_plan(steps: list[Step], facts: Facts) -> list[Output]:
    if not steps:
        return [Call("list_runtime_aliases", {})]
    listed = steps[0].result
    wanted = [Call("runtime_status", dict(n["arguments"])) for n in listed.get("next") or []
              if n.get("tool") == "runtime_status"]
    done = len(_by(steps, "runtime_status"))
    if done < len(wanted):
        return [wanted[done]]
    lines = [f"{s.result.get('alias')}: {s.result.get('state')}" + (f" ({s.result['reason']})" if s.result.get(
        "reason") else "") for s in _by(steps, "runtime_status")]
    lines += [f"{a['alias']}: {a['classification']}" for a in listed.get("aliases") or []
              if a.get("classification") == "stale_alias"]
    fixes = [f"{n['tool']} {json.dumps(n['arguments'])}" for n in listed.get("next") or []
             if n.get("tool") != "runtime_status"]
    return [Say("Runtimes: " + "; ".join(lines) + ". To fix: " + ("; ".join(fixes) or "nothing") + ".")]


def _check_check(ctx: Context, facts: Facts, run: ExecRun, steps: list[Step]) -> list[str]:
    answer = run.answer()
    problems = []
    if not any(f"up: {s}" in answer for s in ("ready", "healthy")):
        problems.append(f"the running runtime is not reported ready or healthy: {answer!r}")
    if "gone: stale_alias" not in answer or 'remove_runtime {"stale": true}' not in answer:
        problems.append(f"the stale alias and its fix are not reported: {answer!r}")
    return problems


# ---------------------------------------------------------------------------- 3. first setup


def _first_plan(steps: list[Step], facts: Facts) -> list[Output]:
    if not steps:
        return [Call("install_or_select_tunnel_client", {})]
    if len(steps) == 1:
        return [Call("help", {"topic": "quickstart"})]
    machine, guide = steps[0].result, steps[1].result
    keys = machine.get("keys_available") or {}
    return [Say(f"tunnel-client {machine.get('version')} has {len(machine.get('aliases') or [])} runtimes; "
                f"CONTROL_PLANE_API_KEY set: {keys.get('CONTROL_PLANE_API_KEY')}. Quickstart: {guide.get('title')}. "
                "Send me your tunnel id and MCP server command and I will connect them.")]


def _first_check(ctx: Context, facts: Facts, run: ExecRun, steps: list[Step]) -> list[str]:
    problems = []
    if len(steps) < 2 or not str(steps[1].result.get("text", "")).strip():
        problems.append("help did not return the quickstart text")
    if "CONTROL_PLANE_API_KEY set: True" not in run.answer() or "Quickstart: " not in run.answer():
        problems.append(f"the answer does not report the machine and the guide: {run.answer()!r}")
    return problems


# ---------------------------------------------------------------------------- 4. diagnose


def _diagnose_setup(ctx: Context, env: dict[str, str]) -> Facts:
    made = cli(["runtimes", "--json", "connect", "--alias", "broken", "--organization-id", "org_codex",
                "--mcp-command", MCP_COMMAND], env)
    assert made.code == 0, made.err
    deleted = cli(["admin", "tunnels", "delete", made.json()["tunnel"]["id"], "--confirm"], env)
    assert deleted.code == 0, deleted.err
    return {}


def _diagnose_plan(steps: list[Step], facts: Facts) -> list[Output]:
    if not steps:
        return [Call("list_runtime_aliases", {})]
    aliases = steps[0].result.get("aliases") or []
    if len(steps) == 1:
        if not aliases:
            return [Say("FAKE MODEL: no runtime to diagnose")]
        return [Call("runtime_status", {"alias": aliases[0]["alias"]})]
    status = steps[1].result
    if len(steps) == 2:
        return [Call("doctor", {"profile": status.get("profile")})]
    first = (status.get("next") or [{}])[0]
    return [Say(f"{status.get('alias')} is {status.get('state')} ({status.get('cause')}): {status.get('reason')}. "
                f"Doctor: {steps[2].result.get('result')}. Next step: {first.get('tool')} "
                f"{json.dumps(first.get('arguments'))}.")]


def _diagnose_check(ctx: Context, facts: Facts, run: ExecRun, steps: list[Step]) -> list[str]:
    answer = run.answer()
    if "broken is failed (tunnel_not_found)" not in answer or "Next step: stop_runtime" not in answer:
        return [f"the failure, its cause and the fix are not reported: {answer!r}"]
    return []


# ---------------------------------------------------------------------------- 5. a new tunnel


def _new_setup(ctx: Context, env: dict[str, str]) -> Facts:
    return {"organization_id": f"org_new_{secrets.token_hex(4)}"}  # a scope with no tunnel yet, every run


def _new_details(facts: Facts) -> str:
    return (f"Organization id: {facts['organization_id']}. MCP server command: {MCP_COMMAND}. Call the runtime "
            "codex-new.")


def _new_plan(steps: list[Step], facts: Facts) -> list[Output]:
    connect = Call("connect_stdio_mcp", {"alias": "codex-new", "organization_id": facts["organization_id"],
                                         "mcp_command": MCP_COMMAND})
    return _connect_then_status(steps, connect, lambda connected, status: (
        f"Created tunnel {connected.get('tunnel_id')} (new: {connected.get('tunnel_created')}); runtime "
        f"{status.get('state')}; MCP URL: {status.get('mcp_url')}"))


def _new_check(ctx: Context, facts: Facts, run: ExecRun, steps: list[Step]) -> list[str]:
    problems = []
    status = steps[-1].result if steps else {}
    url = str(status.get("mcp_url") or "")
    if not url or f"MCP URL: {url}" not in run.answer() or "(new: True)" not in run.answer():
        problems.append(f"the answer does not give the new tunnel's MCP URL: {run.answer()!r}")
    elif _echo(url) != "via codex":
        problems.append("the MCP URL did not reach the MCP server")
    return problems


@dataclass(frozen=True, slots=True)
class Scenario:
    plan: Plan
    tools: tuple[str, ...]  # the calls the prompt must lead to, in order
    check: Callable[[Context, Facts, ExecRun, list[Step]], list[str]]
    setup: Callable[[Context, dict[str, str]], Facts] = lambda ctx, env: {}
    details: Callable[[Facts], str] = lambda facts: ""


SCENARIOS: dict[str, Scenario] = {
    "connect-tunnel": Scenario(_connect_plan, ("connect_stdio_mcp", "runtime_status"), _connect_check,
                               _connect_setup, _connect_details),
    "check-runtimes": Scenario(_check_plan, ("list_runtime_aliases", "runtime_status"), _check_check, _check_setup),
    "first-setup": Scenario(_first_plan, ("install_or_select_tunnel_client", "help"), _first_check),
    "diagnose": Scenario(_diagnose_plan, ("list_runtime_aliases", "runtime_status", "doctor"), _diagnose_check,
                         _diagnose_setup),
    "new-tunnel": Scenario(_new_plan, ("connect_stdio_mcp", "runtime_status"), _new_check, _new_setup,
                           _new_details),
}
assert [p.name for p in STARTER_PROMPTS] == list(SCENARIOS), "every starter prompt needs its scenario"


def _start_instead(codex_home: Path, module: str) -> None:
    path = codex_home / "plugins" / "cache" / "debug" / "tunnel-client" / "local" / ".mcp.json"
    config = json.loads(path.read_text())
    config["mcpServers"]["tunnel-client"]["args"] = ["-m", module]
    path.write_text(json.dumps(config, indent=2))


def prompt_env(ctx: Context, home: Path) -> dict[str, str]:
    """What a user's shell gives Codex: the keys, the control plane, the state and profile directories."""
    return base_env(home, PATH=codex_search_path(), CODEX_HOME=str(home / "codex-home"), **{API_KEY_ENV: "dummy"},
                    TUNNEL_CLIENT_STATE_DIR=str(home / "state"), TUNNEL_CLIENT_PROFILE_DIR=str(home / "profiles"),
                    CONTROL_PLANE_BASE_URL=ctx.service.base_url, OPENAI_ADMIN_KEY=ctx.keys.admin,
                    CONTROL_PLANE_API_KEY=ctx.keys.runtime)


def run_prompt(ctx: Context, name: str, run_dir: Path, *, server_module: str = "") -> PromptRun:
    """One starter prompt from a fresh CODEX_HOME and state; every runtime it started is stopped afterwards.

    ``server_module`` replaces the module the installed plugin starts (the bench compares
    ``agent_tools.server``, the SDK server alone, with the default front).
    """
    scenario = SCENARIOS[name]
    prompt = next(p for p in STARTER_PROMPTS if p.name == name)
    run_dir.mkdir(parents=True)
    env = prompt_env(ctx, run_dir)
    codex_home = Path(env["CODEX_HOME"])
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(ctx.fake.provider_config(), encoding="utf-8")
    try:
        installed = cli(["codex", "plugin", "install", "--codex-home", str(codex_home), "--approve-tools", "all"],
                        env)
        assert installed.code == 0, installed.err
        if server_module:
            _start_instead(codex_home, server_module)
        facts = scenario.setup(ctx, env)
        ctx.fake.requests.clear()
        ctx.fake.failures.clear()
        ctx.fake.policy = lambda body: scenario.plan(history(body), facts)
        details = scenario.details(facts)
        started = time.monotonic()
        run = run_exec(env, run_dir, prompt.text + (f"\n\n{details}" if details else ""))
        seconds = time.monotonic() - started
        requests = list(ctx.fake.requests)
        steps = history(requests[-1]) if requests else []
        problems = list(ctx.fake.failures)
        if run.returncode != 0:
            problems.append(f"codex exec exited {run.returncode}: {run.stderr[-500:]}")
        made = [s.name for s in steps]
        if [t for t in made if t in scenario.tools] != [t for t in made if t in scenario.tools] or \
                list(dict.fromkeys(made)) != list(scenario.tools):
            problems.append(f"tool calls {made}, expected {list(scenario.tools)}")
        errors = [f"{c.get('tool')}: {c.get('error') or c.get('result')}" for c in run.tool_calls()
                  if c.get("status") != "completed"]
        problems += [f"tool call failed: {e}"[:400] for e in errors]
        if not problems:
            problems += scenario.check(ctx, facts, run, steps)
        first = bool(requests) and any(ns == NAMESPACE for ns, _ in offered_tools(requests[0]))
        return PromptRun(name, not problems, problems, made, first, round(seconds, 2), run.answer(), steps)
    finally:
        cli(["runtimes", "stop", "codex-demo"], env)
        kill_runtimes(str(run_dir))
