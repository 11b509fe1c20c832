"""The user docs stay true to the code: every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path

from tunnel_core.cli.main import build_parser
from tunnel_core.config.specs import SPECS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_runtime_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [s.flag for s in SPECS if f"`{s.flag}`" not in text]
    missing += [s.env for s in SPECS if s.env and f"`{s.env}`" not in text]
    missing += [s.key for s in SPECS if f"`{s.key}`" not in text]
    assert not missing, f"docs/configuration.md lacks: {missing}"


def test_every_top_level_command_is_documented_somewhere() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = sorted(sub.choices)  # type: ignore[attr-defined]
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    missing = [c for c in commands if f"tunnel-client {c}" not in corpus]
    assert not missing, f"no doc shows these commands: {missing}"
