"""The agent runs on stock images: it needs the standard library, click and boto3, nothing more.

(The wheel still declares the CLI's other dependencies; the agent just never imports them, so
a node without them, e.g. an AMI's minimal venv, runs it.)
"""

from __future__ import annotations

import subprocess
import sys

CLI_ONLY = ("troposphere", "awacs", "paramiko", "jinja2", "yaml", "cfnlint")


def test_agent_imports_only_stdlib_click_and_boto3() -> None:
    script = f"""
import sys
import cfn_chainermn.cli.node_cmd, cfn_chainermn.node.agent, cfn_chainermn.node.aws_backend
import cfn_chainermn.node.local_backend, cfn_chainermn.cluster.inventory
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
for args in (["node", "--help"], ["node", "boot", "--help"], ["node", "status", "--root", "/nonexistent"]):
    run_with_boundary(cli, args)
print("LOADED=" + ",".join(m for m in {CLI_ONLY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "LOADED=", out.stdout[-400:] + out.stderr[-400:]
