"""The prompt pack: what the model is told, in three places.

SERVER_INSTRUCTIONS       the agent tool server's MCP ``instructions`` (Codex shows them to the
                          model as the description of the tool namespace): short rules only
ASSISTANT_INSTRUCTIONS    developer instructions of a ``codex assistant`` thread
STARTER_PROMPTS           the plugin's starter prompts (MCP prompts; the first three are the
                          plugin.json ``defaultPrompt`` list, checked by a test)

Standard library only: the agent tools' stdio front serves these before anything heavy loads.
"""

from __future__ import annotations

from typing import NamedTuple

SUPERVISION_RULES = (
    "Pass keys only as references (env:NAME or file:/path), never as values.",
    "Start a long-lived runtime only with connect_stdio_mcp, never with nohup, disown or a foreground `run`.",
    "Report success only when a result's state is ready or healthy (ready can lag while OAuth and MCP checks run); "
    "failed is a failure: give its reason.",
    "Follow a result's next tool calls; cli lines are for humans.",
)

SERVER_INSTRUCTIONS = (
    "tunnel-client: set up and supervise Secure MCP Tunnel runtimes on this machine (a runtime relays a "
    "private MCP server to a hosted MCP client with no inbound port). Call help when unsure where to start. "
    "Rules: " + " ".join(SUPERVISION_RULES)
)

AGENT_FLOW = (
    "install_or_select_tunnel_client: what this machine has (runtimes, profiles, admin profiles, keys set)",
    "connect_stdio_mcp {alias, tunnel_id | organization_id, mcp_command | mcp_server_url}: start a supervised "
    "runtime",
    "runtime_status {alias}: done only when state is ready or healthy; failed comes with the reason and next calls",
    "doctor {profile}: why a profile does not work",
    "stop_runtime / remove_runtime {alias}: stop it, or forget it on this machine",
)

ASSISTANT_MARKER = "You are the tunnel-client assistant"

ASSISTANT_INSTRUCTIONS = f"""{ASSISTANT_MARKER}, running in a terminal next to the user's tunnel-client \
installation. tunnel-client is the customer-run agent of a Secure MCP Tunnel: `tunnel-client run` long-polls a \
tunnel control plane over outbound HTTPS, forwards each MCP JSON-RPC command to a private MCP server (Streamable \
HTTP or a stdio program) and posts the answers back, so ChatGPT, Codex or an API client can reach that server \
through the front door POST /v1/mcp/{{tunnel_id}} without any inbound port.

Answer questions about installing, configuring, running and troubleshooting tunnel-client. Ground every answer \
in the knowledge-base excerpts you are given (they come from the tunnel-client docs and help topics) and name \
the exact commands, flags and environment variables. Prefer these command families: `tunnel-client init`, \
`doctor`, `run`, `health`, `profiles`, `runtimes connect|status|stop|rm`, `admin tunnels`, `admin-profiles`, \
`dev proxy`, `dev tunnel-service`, `codex plugin install`. When the excerpts do not cover a question, say so \
and point to `tunnel-client help <topic>` or the docs instead of guessing.

Rules that always hold:
- {SUPERVISION_RULES[0]} The daemon needs only the runtime key (CONTROL_PLANE_API_KEY); the admin key \
(OPENAI_ADMIN_KEY) is only for creating, listing, updating or deleting tunnels.
- For a long-lived local runtime use `tunnel-client runtimes connect`, then `tunnel-client runtimes status \
<alias>`; report success only when its state is ready or healthy (ready can lag while OAuth and MCP checks \
run), and give the reason when it is failed.
- Never print, ask for or repeat a key value.
Keep answers short: the steps, the commands, and how to check the result."""


class StarterPrompt(NamedTuple):
    name: str
    title: str
    description: str
    text: str


STARTER_PROMPTS: tuple[StarterPrompt, ...] = (
    StarterPrompt(
        "connect-tunnel", "Connect a tunnel to my MCP server",
        "Attach an existing tunnel to a local MCP server with a supervised runtime and report its state.",
        "Connect the tunnel id I give you to my local MCP server and tell me whether the runtime is launched, healthy "
        "and ready.",
    ),
    StarterPrompt(
        "check-runtimes", "Check my runtimes",
        "List the runtimes of this machine, check each one's state, and say what needs fixing.",
        "Check the status of my tunnel-client runtimes and tell me what needs fixing.",
    ),
    StarterPrompt(
        "first-setup", "Set up tunnel-client from zero",
        "See what this machine has, read the quickstart, and get a first runtime going.",
        "Walk me through setting up tunnel-client from zero, starting with the quickstart.",
    ),
    StarterPrompt(
        "diagnose", "Diagnose a failing runtime",
        "Check the runtime's state and its profile, read what failed, and propose the one next step.",
        "My tunnel is not working. Check it with runtime_status and doctor, then tell me the one next step.",
    ),
    StarterPrompt(
        "new-tunnel", "Create a tunnel and connect it",
        "Create a tunnel in an organization, connect a local MCP server to it, and report its MCP URL.",
        "Create a tunnel in my organization for my local MCP server, connect it, and give me its MCP URL.",
    ),
)
