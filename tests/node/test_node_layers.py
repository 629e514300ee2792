"""The agent's shape, kept honest: it never imports the CLI, and the local/AWS choice is made in
one place (agent.py assembles the back ends; settings.py declares --backend), never in a step."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cfn_chainermn.node

NODE = Path(cfn_chainermn.node.__file__).parent
ASSEMBLY = {"agent.py", "settings.py"}  # where --backend is declared and the back ends are picked


def _modules() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(NODE.glob("*.py"))}


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            names |= {n.module, *(f"{n.module}.{a.name}" for a in n.names)}
    return names


def test_agent_never_imports_the_cli() -> None:
    for name, tree in _modules().items():
        bad = sorted(m for m in _imported(tree) if m == "cfn_chainermn.cli" or m.startswith("cfn_chainermn.cli."))
        assert not bad, f"node/{name} imports {bad}"
    mods = ", ".join(f"cfn_chainermn.node.{p.stem}" for p in sorted(NODE.glob("*.py")) if p.stem != "__init__")
    script = f"import sys, {mods}\nprint(sorted(m for m in sys.modules if m.startswith('cfn_chainermn.cli')))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_local_and_aws_differ_only_behind_the_back_ends() -> None:
    for name, tree in _modules().items():
        if name in ASSEMBLY:
            continue
        reads = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("local", "backend")]
        assert not reads, f"node/{name} branches on the back end at lines {reads}: ask ctx.platform instead"
