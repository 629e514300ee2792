"""On an image built by the AMI recipe, jobs find the Chainer stack first, not the agent's venv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from node_sim import SimCluster

from cfn_chainermn.node import agent, aws_platform


def test_ami_manifest_dirs_come_first_and_agent_last(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    root = c.nodes["master"].root
    stack_bins = ["/opt/chainer/bin", "/usr/local/mpi/bin", "/usr/local/cuda-11.0/bin"]
    stack_libs = ["/usr/local/mpi/lib", "/usr/local/cuda-11.0/lib64"]
    for d in [*stack_bins, *stack_libs, "/opt/amazon/openmpi/bin"]:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    manifest = root / "etc/cfn-chainermn/ami-manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"env": {"PATH": [*stack_bins, "/opt/missing/bin"],
                                            "LD_LIBRARY_PATH": stack_libs}}))
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    env = (root / "home/chainer/.cfn-chainermn.env").read_text()
    path = env.split("export PATH=", 1)[1].splitlines()[0].split(":")
    assert path[:4] == [*stack_bins, "/opt/amazon/openmpi/bin"]
    assert "/opt/missing/bin" not in path  # only directories that exist on the node
    assert path[-1] == str(Path(sys.executable).parent)  # the agent's own interpreter last
    libs = env.split("export LD_LIBRARY_PATH=", 1)[1].splitlines()[0].split(":")
    assert libs == stack_libs
    mca = (root / "home/chainer/.openmpi/mca-params.conf").read_text()
    assert f"PATH={':'.join(path)}" in mca


def test_stock_image_keeps_standard_dirs(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    root = c.nodes["master"].root
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    env = (root / "home/chainer/.cfn-chainermn.env").read_text()
    path = env.split("export PATH=", 1)[1].splitlines()[0].split(":")
    assert path[:6] == ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    assert "LD_LIBRARY_PATH" not in env


DEBIAN_BASHRC = """# ~/.bashrc: executed by bash(1) for non-login shells.
# If not running interactively, don't do anything
case $- in
    *i*) ;;
      *) return;;
esac
export PATH="$PATH:/interactive/only/bin"
"""


def test_non_interactive_ssh_shell_sees_the_mpi_path(sim_cluster: SimCluster) -> None:
    """What `ssh chainer@node orted ...` runs: bash -c, not interactive, so a Debian/Ubuntu
    .bashrc returns at its top; the agent's line must come before that return."""
    c = sim_cluster
    root = c.nodes["master"].root
    mpi_bin = "/opt/amazon/openmpi/bin"
    assert mpi_bin in aws_platform.BIN_DIRS
    (root / mpi_bin.lstrip("/")).mkdir(parents=True)
    home = root / "home/chainer"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text(DEBIAN_BASHRC)

    def shell_path() -> list[str]:
        # mirrors a non-interactive ssh command: a bare environment, bash -c, ~/.bashrc sourced
        out = subprocess.run(["env", "-i", f"HOME={home}", "bash", "-c", '. "$HOME/.bashrc"; echo "$PATH"'],
                             capture_output=True, text=True, check=True).stdout.strip()
        return out.split(":")

    assert mpi_bin not in shell_path()  # the check can fail: the image's .bashrc alone does not add it
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    path = shell_path()
    assert mpi_bin in path and "/usr/bin" in path
    assert "/interactive/only/bin" not in path  # the shell really was non-interactive and returned early
    assert (home / ".bashrc").read_text().endswith(DEBIAN_BASHRC)  # the image's lines are kept
