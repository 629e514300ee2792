"""On an image built by the AMI recipe, jobs find the Chainer stack first, not the agent's venv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from node_sim import SimCluster

from cfn_chainermn.node import agent


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
