"""Issue 12 item 4: jobs (the cluster user) must not reach the instance metadata service.

Under a test root System records commands instead of running them: these pin the exact
iptables commands an AWS node runs, that running them again stacks nothing, that a node whose
image lacks iptables fails its boot with the reason (and is never marked ready), and that the
rule comes back at every boot (a unit) and every refresh. test_imds_guard_netns.py proves on a
real kernel that the same rule lets root through and refuses anyone else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from node_sim import GUARD_AGAIN, GUARD_FIRST_BOOT, SimCluster, with_iptables

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import imds_guard
from cfn_chainermn.node.agent import AwsClients, refresh
from cfn_chainermn.node.aws_platform import AwsPlatform
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.state import State
from cfn_chainermn.node.system import System

UNIT = "etc/systemd/system/cfn-chainermn-imds-guard.service"


def _platform(root: Path) -> AwsPlatform:
    return AwsPlatform(System(root), Imds("http://127.0.0.1:9"))


def test_first_boot_runs_exactly_these_commands(tmp_path: Path) -> None:
    with_iptables(tmp_path)
    detail = _platform(tmp_path).guard_imds()
    assert System(tmp_path).recorded() == GUARD_FIRST_BOOT
    assert detail == ("metadata service for root only: 169.254.169.254 guarded now, fd00:ec2::254 guarded now; "
                      "cfn-chainermn-imds-guard.service enabled")
    unit = (tmp_path / UNIT).read_text()
    assert "ExecStart=" in unit and unit.rstrip().endswith("WantedBy=multi-user.target")
    assert "-m cfn_chainermn.node.imds_guard" in unit and "Before=network-pre.target ssh.service sshd.service" in unit


def test_running_again_only_probes(tmp_path: Path) -> None:
    with_iptables(tmp_path)
    platform = _platform(tmp_path)
    platform.guard_imds()
    for _ in range(3):
        assert "already guarded" in platform.guard_imds()
    log = System(tmp_path).recorded()
    assert log == GUARD_FIRST_BOOT + GUARD_AGAIN * 3
    assert sum(" -I OUTPUT " in x for x in log) == 2  # one insert per family, ever


def test_no_iptables_fails_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"iptables not found on this image .*instance role.*install iptables"):
        _platform(tmp_path).guard_imds()
    assert System(tmp_path).recorded() == []
    assert imds_guard.main(tmp_path) == 1  # the boot-time unit fails too (systemctl shows it)


def test_without_ip6tables_ipv4_is_still_guarded(tmp_path: Path) -> None:
    with_iptables(tmp_path)
    (tmp_path / "usr/sbin/ip6tables").unlink()
    detail = imds_guard.apply(System(tmp_path))
    assert detail.endswith("169.254.169.254 guarded now, fd00:ec2::254 not guarded (no ip6tables)")
    assert System(tmp_path).recorded() == GUARD_FIRST_BOOT[:2]


def test_guard_comes_before_the_user_and_readiness(sim_cluster: SimCluster) -> None:
    """No cluster user (so no job) exists before the rule, and no ready marker without it."""
    c = sim_cluster
    m = c.nodes["master"]
    (m.root / "usr/sbin/iptables").unlink()
    with pytest.raises(AgentError, match="imds step failed: iptables not found"):
        c.boot("master")
    state = State.load(m.root / "var/lib/cfn-chainermn/state.json")
    assert not state.ready and state.steps["imds"]["status"] == "failed"
    assert state.steps["user"]["status"] == "pending"
    assert System(m.root).recorded() == []  # no useradd
    listed = c.s3.list_objects_v2(Bucket=c.bucket, Prefix=f"nodes/{m.instance_id}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == []


def test_refresh_restores_lost_rules(sim_cluster: SimCluster) -> None:
    """Rules flushed by hand (or a reboot before the unit ran) are back at the next refresh."""
    c = sim_cluster
    m = c.nodes["master"]
    c.boot("master")
    journal = m.root / "var/lib/cfn-chainermn/commands.log"
    refresh(c.settings("master"), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    log = (m.root / "var/log/cfn-chainermn/agent.log").read_text()
    assert "refresh: metadata" not in log  # a healthy node's refresh adds nothing to its log
    journal.write_text("")  # the test root's model of a flushed OUTPUT chain: nothing inserted yet
    refresh(c.settings("master"), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    assert [x for x in System(m.root).recorded() if "tables" in x] == GUARD_FIRST_BOOT[:4]
    log = (m.root / "var/log/cfn-chainermn/agent.log").read_text()
    assert log.count("refresh: metadata service for root only: 169.254.169.254 guarded now") == 1


def test_refresh_reports_a_guard_it_cannot_keep(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    m = c.nodes["master"]
    c.boot("master")
    (m.root / "usr/sbin/iptables").unlink()
    with pytest.raises(AgentError, match="refresh: imds: iptables not found"):
        refresh(c.settings("master"), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    state = State.load(m.root / "var/lib/cfn-chainermn/state.json")
    assert state.steps["imds"]["status"] == "failed" and state.steps["hostfile"]["status"] == "ok"
