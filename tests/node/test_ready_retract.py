"""Readiness is retracted when a boot runs again: a failing re-boot must not leave the marker of
an earlier good boot, or the node stays in every hostfile though it is broken."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from node_sim import SimCluster, local_cluster, local_settings

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent, aws_platform
from cfn_chainermn.node.state import State
from cfn_chainermn.node.system import System


class _DeadMountTarget(System):
    """The seam on a node whose EFS mount target never answers."""

    def mount(self, mount_point: str) -> None:
        super().mount(mount_point)
        raise AgentError("mount.nfs4: Connection timed out")

    def is_mounted(self, mount_point: str) -> bool:
        return False


def test_failed_reboot_drops_the_worker_from_the_hostfile(sim_cluster: SimCluster,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    c = sim_cluster
    m, w1 = c.nodes["master"], c.nodes["w1"]
    for name in ("master", "w1"):
        assert agent.boot(c.settings(name), c.clients(name), echo=c.echo()).ready
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(m.root)]) == 0
    hostfile = m.root / "home/chainer/hostfile"
    assert hostfile.read_text().count("slots=") == 2  # w1 is in while its boot is good

    with monkeypatch.context() as mp, pytest.raises(AgentError, match="efs step failed"):
        mp.setattr(agent, "System", _DeadMountTarget)
        mp.setattr(aws_platform, "MOUNT_FIRST_DELAY_S", 0.05)
        mp.setattr(aws_platform, "MOUNT_DEADLINE_S", 0.2)
        agent.boot(c.settings("w1"), c.clients("w1", status="FAILURE"), echo=c.echo())
    c.stubs[-1].assert_no_pending_responses()
    listed = c.s3.list_objects_v2(Bucket=c.bucket, Prefix=f"nodes/{w1.instance_id}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"nodes/{w1.instance_id}/host_ed25519.pub"]
    state = State.load(w1.root / "var/lib/cfn-chainermn/state.json")
    assert not state.ready and "readiness retracted" in state.steps["identity"]["detail"]
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(m.root)]) == 0
    assert hostfile.read_text() == f"{m.private_ip} slots=4\n"
    # a good boot after that puts it back
    assert agent.boot(c.settings("w1"), c.clients("w1"), echo=c.echo()).ready
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(m.root)]) == 0
    assert hostfile.read_text().count("slots=") == 2


def test_local_failed_reboot_retracts_readiness(tmp_path: Path) -> None:
    """The local back end does the same on its bucket folder."""
    d, ids = tmp_path / "lc", ["m", "w1"]
    local_cluster(d, ids)
    assert agent.boot(local_settings(d, ids, 0), echo=io.StringIO()).ready
    assert agent.boot(local_settings(d, ids, 1), echo=io.StringIO()).ready
    assert (d / "home/hostfile").read_text() == "127.0.0.2 slots=1\n127.0.0.3 slots=1\n"
    with pytest.raises(AgentError, match="ssh step failed: no ssh host key"):  # its host key file is gone
        agent.boot(local_settings(d, ids, 1, host_key=str(d / "nodes/w1/missing.pub")), echo=io.StringIO())
    assert not (d / "bucket/nodes/w1/ready").exists()
    assert agent.refresh(local_settings(d, ids, 0), echo=io.StringIO()).steps["hostfile"]["status"] == "ok"
    assert (d / "home/hostfile").read_text() == "127.0.0.2 slots=1\n"
