"""The house rules of docs/ARCHITECTURE: the tunnel service speaks only the wire.

``tunnel_core/devservice/`` may import foundation modules (config, wire, netserve, logs, ...)
and nothing of the client: not the composition (``runner``, ``devproxy``), the engine
(``relay``, ``targets``, ``oauth``, ``controlplane``) or the operator surface (``opsserver``).
Two checks, because each misses what the other sees: every import statement written in
``devservice/`` (including the ones inside functions), and every module actually loaded when all
of ``devservice/`` is imported in a fresh interpreter (which catches a foundation module that
itself pulls in the client).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVSERVICE = ROOT / "tunnel_core" / "devservice"
CLIENT = ("tunnel_core.runner", "tunnel_core.devproxy", "tunnel_core.relay", "tunnel_core.targets",
          "tunnel_core.oauth", "tunnel_core.controlplane", "tunnel_core.opsserver", "tunnel_core.runtimes",
          "tunnel_core.cli", "agent_tools")


def _is_client(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CLIENT)


def _imports(source: str) -> list[str]:
    """Every absolute module an import statement in ``source`` names, wherever the statement is."""
    tree = ast.parse(source)
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return out


def test_devservice_source_imports_nothing_of_the_client() -> None:
    files = sorted(DEVSERVICE.rglob("*.py"))
    assert len(files) > 5  # the walk found the package
    bad = {f"{p.relative_to(ROOT)}: {m}" for p in files for m in _imports(p.read_text()) if _is_client(m)}
    assert not bad, "devservice/ must not import the client:\n" + "\n".join(sorted(bad))


def test_importing_devservice_loads_no_client_module() -> None:
    modules = sorted("tunnel_core.devservice." + ".".join(p.relative_to(DEVSERVICE).with_suffix("").parts)
                     for p in DEVSERVICE.rglob("*.py") if p.name != "__init__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=ROOT)
    loaded = out.stdout.split()
    assert "tunnel_core.devservice.app" in loaded
    assert [m for m in loaded if _is_client(m)] == []


def test_the_check_sees_a_client_import() -> None:
    # The detector itself must be able to fail: a lazy import inside a function counts.
    src = "def f():\n    from tunnel_core.targets.failures import status_text\n    import tunnel_core.runner\n"
    tree_imports = [m for m in _imports(src) if _is_client(m)]
    assert "tunnel_core.targets.failures" in tree_imports and "tunnel_core.runner" in tree_imports
    assert not _is_client("tunnel_core.wire.prmd") and not _is_client("tunnel_core.runnerx")

