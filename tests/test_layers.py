"""The package's layers, checked: what may import what (docs/architecture.md explains why).

- The pure core (names, errors, settings, catalog, template builders, hostfile, mpiexec argv,
  console-key parsing) imports no boto3/botocore, paramiko or click, at module level or inside a
  function: it is what tests can exercise with no AWS, no SSH and no CLI.
- Nothing outside cli/ imports cli/ (the CLI is the top; `python -m cfn_chainermn` aside).
- node/ (the agent on every instance) imports no cli/, and nothing that needs paramiko,
  troposphere or jinja2 (tests/node/test_footprint.py checks what really loads at run time).

Imports are read from the source with `ast`, function-local ones included, so a lazy import
that breaks a rule is caught as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cfn_chainermn"

PURE_CORE = (
    "cfn_chainermn.names",
    "cfn_chainermn.errors",
    "cfn_chainermn.config",
    "cfn_chainermn.catalog",
    "cfn_chainermn.template",
    "cfn_chainermn.cluster.hostfile",
    "cfn_chainermn.cluster.console_keys",
    "cfn_chainermn.cluster.view",
    "cfn_chainermn.cluster.choice",
    "cfn_chainermn.jobs.mpi",
    "cfn_chainermn.jobs.fabric",
)
# packages whose __init__ the core passes through on its way to a core module (docstrings only)
CORE_PASSAGES = {"cfn_chainermn", "cfn_chainermn.__version__", "cfn_chainermn.cluster", "cfn_chainermn.jobs"}
EDGE_LIBRARIES = ("boto3", "botocore", "paramiko", "click", "mypy_boto3_")
ABOVE_ALL = ("cfn_chainermn.cli", "cfn_chainermn.__main__")
AGENT_FORBIDDEN = ("cfn_chainermn.cli", "paramiko", "troposphere", "awacs", "jinja2", "cfn_chainermn.template")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module a source file imports, anywhere in it, as absolute dotted names.

    `from cfn_chainermn.cluster import hostfile` yields both the package and
    `cfn_chainermn.cluster.hostfile`, so a rule on a submodule sees it.
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_imports() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py")
            for p in sorted(PKG.rglob("*.py"))}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") or (p.endswith("_") and name.startswith(p)) for p in prefixes)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken rule as 'importer -> imported (rule)'."""
    out: list[str] = []
    for module, imported in graph.items():
        for name in sorted(imported):
            if under(module, PURE_CORE) and under(name, EDGE_LIBRARIES):
                out.append(f"{module} -> {name} (the pure core imports no boto3/paramiko/click)")
            if (under(module, PURE_CORE) and under(name, ("cfn_chainermn",))
                    and not (name in CORE_PASSAGES or under(name, PURE_CORE))):
                out.append(f"{module} -> {name} (the pure core imports only the pure core)")
            if not under(module, ABOVE_ALL) and under(name, ("cfn_chainermn.cli",)):
                out.append(f"{module} -> {name} (nothing below the CLI imports cli/)")
            if under(module, ("cfn_chainermn.node",)) and under(name, AGENT_FORBIDDEN):
                out.append(f"{module} -> {name} (the node agent stays light and never imports cli/)")
    return out


def test_the_package_keeps_its_layers() -> None:
    graph = package_imports()
    assert len(graph) > 50  # the whole package was read, not an empty glob
    assert violations(graph) == []


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("cfn_chainermn.config.model", "def f():\n    import boto3\n", "cfn_chainermn.config.model -> boto3"),
    ("cfn_chainermn.jobs.mpi", "from paramiko import SSHClient\n", "cfn_chainermn.jobs.mpi -> paramiko"),
    ("cfn_chainermn.template.iam", "import click\n", "cfn_chainermn.template.iam -> click"),
    ("cfn_chainermn.stack.cfn", "from cfn_chainermn.cli import boundary\n",
     "cfn_chainermn.stack.cfn -> cfn_chainermn.cli"),
    ("cfn_chainermn.node.steps", "from ..cli.boundary import state\n", "cfn_chainermn.node.steps -> cfn_chainermn.cli"),
    ("cfn_chainermn.node.agent", "def f():\n    import paramiko\n", "cfn_chainermn.node.agent -> paramiko"),
    ("cfn_chainermn.config.params", "from cfn_chainermn.stack import cfn\n",
     "cfn_chainermn.config.params -> cfn_chainermn.stack"),
    ("cfn_chainermn.jobs.mpi", "from cfn_chainermn import aws\n", "cfn_chainermn.jobs.mpi -> cfn_chainermn.aws"),
])
def test_a_broken_rule_is_reported(module: str, source: str, expected: str) -> None:
    found = violations({module: imports_of(source, module)})
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(("module", "source"), [
    ("cfn_chainermn.stack.cfn", "import boto3\n"),  # an edge may use boto3
    ("cfn_chainermn.cli.stack_cmd", "from cfn_chainermn.cli.boundary import state\n"),
    ("cfn_chainermn.__main__", "from cfn_chainermn.cli import main\n"),
    ("cfn_chainermn.node.agent", "import boto3\nimport click\n"),
    ("cfn_chainermn.template.iam",
     "from cfn_chainermn import __version__\nfrom cfn_chainermn.names import KEY_PREFIX\n"),
])
def test_what_the_layers_allow_is_not_reported(module: str, source: str) -> None:
    assert violations({module: imports_of(source, module)}) == []
