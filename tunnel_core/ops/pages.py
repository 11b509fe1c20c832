"""The setup pages an operator needs, with the doctor check id that reports each one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetupPage:
    check_id: str
    label: str
    url: str


TUNNELS_PAGE = SetupPage(
    "tunnels_management_url", "Tunnels management", "https://platform.openai.com/settings/organization/tunnels"
)
RUNTIME_KEYS_PAGE = SetupPage(
    "runtime_api_keys_url", "Runtime API keys", "https://platform.openai.com/settings/organization/api-keys"
)
ADMIN_KEYS_PAGE = SetupPage(
    "admin_api_keys_url", "Admin API keys", "https://platform.openai.com/settings/organization/admin-keys"
)
CONNECTORS_PAGE = SetupPage(
    "chatgpt_connector_settings_url", "ChatGPT connector settings", "https://chatgpt.com/#settings/Connectors"
)
SETUP_PAGES: tuple[SetupPage, ...] = (TUNNELS_PAGE, RUNTIME_KEYS_PAGE, ADMIN_KEYS_PAGE, CONNECTORS_PAGE)


def connector_note(run_command: str) -> str:
    """Why the daemon must be up while a ChatGPT connector is created and used."""
    return (
        f"Create or check the connector at {CONNECTORS_PAGE.url} while `{run_command}` is running; "
        "ChatGPT reaches your server only through a running daemon, for discovery and for every call."
    )
