"""`cluster check` on EFA types: each node's `fi_info -p efa` against its type's network cards;
a node short of devices is named and fails the check, types without EFA just say `tcp`."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fake_ssh
import pytest
from fake_channel import ShellRemote

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cli.services import Services
from cfn_chainermn.cluster import check
from cfn_chainermn.cluster.handle import Cluster
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.jobs import mpi


def check_sh_block(printed: str) -> str:
    """What a node printed, as check.sh passes it on: each line marked `| `."""
    return "".join(f"| {line}\n" for line in printed.splitlines())


def _entry(domain: str, fabric_name: str = "efa", ep: str = "FI_EP_RDM") -> str:
    return (f"provider: efa\n    fabric: {fabric_name}\n    domain: {domain}\n    version: 122.0\n"
            f"    type: {ep}\n    protocol: FI_PROTO_EFA\n")


def fi_info_output(buses: tuple[int, ...]) -> str:
    """`fi_info -p efa` on a p4d-like node (the layout of skypilot-org/skypilot
    examples/aws_efa/README.md): each device as an RDM and a DGRAM endpoint."""
    if not buses:
        return "fi_getinfo: -61\n"  # no EFA device (aws-samples/aws-hpc-tutorials content/07-EFA)
    return "".join(_entry(f"rdmap{b}s27-rdm") + _entry(f"rdmap{b}s27-dgrm", ep="FI_EP_DGRAM") for b in buses)


P4D = "p4d.24xlarge"
NODES = [Node("i-master", "10.0.0.10", "master", P4D), Node("i-w1", "10.0.0.11", "worker", P4D),
         Node("i-w2", "10.0.0.12", "worker", P4D), Node("i-w3", "10.0.0.13", "worker", P4D)]
ALL4 = (16, 32, 144, 160)


def test_probe_asks_fi_info_on_efa_types_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    p3 = Node("i-p3", "10.0.0.20", "worker", "p3.16xlarge")
    for node in (NODES[0], p3):  # a fi_info on both: only the p4d's may be asked
        (ssh.host(node.private_ip) / "out").write_text(fi_info_output(ALL4))
        ssh.tool(node.private_ip, "fi_info", f"cat {ssh.host(node.private_ip) / 'out'}")
    _, out = ShellRemote().capture(check.probe_script([NODES[0], p3], 22))
    assert [call[-1] for call in ssh.calls()] == ["efa", "tcp"]  # `sh -s FABRIC`, 10.0.0.10 first
    results = check.parse(out, [NODES[0], p3])
    assert [(r.efa, r.fabric) for r in results] == [(4, "4/4"), (None, "tcp")]
    assert out.count("efa domain: ") == 8


def _probe(fabric_name: str, path: str) -> str:
    """probe.sh as a node runs it: `sh -s FABRIC`, the script on its input."""
    return subprocess.run(["sh", "-s", fabric_name], input=check.script_text("probe.sh"), capture_output=True,
                          text=True, check=True, env={"PATH": path}).stdout


def test_the_probe_marks_fi_info_domains_and_parse_counts_devices(tmp_path: Path) -> None:
    """The probe's EFA part run by sh with a fi_info on PATH; the GPUs this machine has are not the point.
    Its nproc drains the input it shares with the shell reading the script: the rest still runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "out").write_text(fi_info_output(ALL4))
    (bin_dir / "fi_info").write_text(f'#!/bin/sh\n[ "$*" = "-p efa" ] && cat {tmp_path / "out"}\n')
    (bin_dir / "nproc").write_text("#!/bin/sh\ncat > /dev/null\necho 96\n")
    for tool in ("fi_info", "nproc"):
        (bin_dir / tool).chmod(0o755)
    out = _probe("efa", f"{bin_dir}:/usr/bin:/bin")
    assert out.count("efa domain: ") == 8 and "cpus=96\n" in out
    [result] = check.parse(f"== i-master\n{check_sh_block(out)}rc=0\n", NODES[:1])
    assert (result.efa, result.expected_efa, result.fabric) == (4, 4, "4/4") and not result.efa_short
    assert _probe("tcp", f"{bin_dir}:/usr/bin:/bin").splitlines()[1:] == ["cpus=96"]
    if not Path("/opt/amazon/efa/bin/fi_info").exists():  # an EFA host has the installer's
        assert _probe("efa", "/usr/bin:/bin").splitlines()[-1] == "efa=no-fi_info"


def block(node: Node, buses: tuple[int, ...] | None) -> str:
    """A node's answer to the probe, as its shell prints it (fi_info's domain lines marked)."""
    efa = "efa=no-fi_info\n" if buses is None else "".join(
        f"efa domain: {line.split('domain: ')[1]}\n" for line in fi_info_output(buses).splitlines()
        if "domain: " in line)
    printed = check_sh_block("gpus=8\ncpus=96\n" + efa)
    return f"== {node.instance_id}\n{printed}rc=0\n"


def test_a_node_short_of_devices_is_named_and_fails() -> None:
    out = block(NODES[0], ALL4) + block(NODES[1], (16, 32)) + block(NODES[2], None) + block(NODES[3], ALL4)
    results = check.parse(out, NODES)
    assert [r.status for r in results] == ["ok", "EFA SHORT", "EFA SHORT", "ok"]
    assert results[1].detail == "sees 2 EFA devices where the other p4d.24xlarge nodes see 4"
    assert results[2].detail == "no fi_info on PATH or in /opt/amazon/efa/bin: the EFA software is missing"
    assert [r.node.instance_id for r in check.failures(results)] == ["i-w1", "i-w2"]
    table = check.table(results).splitlines()
    assert table[0].split()[:7] == ["NODE", "ADDRESS", "ROLE", "SSH", "GPUS", "CPUS", "EFA"]
    assert table[2].split()[3:8] == ["EFA", "SHORT", "8/8", "96", "2/4"]
    assert check.notes(results) == []


def test_efa_on_card_0_alone_everywhere_is_consistent_and_noted() -> None:
    """In a subnet the stack made itself, multi-card types get EFA on card 0 only: every node 1/4."""
    results = check.parse("".join(block(n, (16,)) for n in NODES), NODES)
    assert [r.status for r in results] == ["ok"] * 4 and {r.fabric for r in results} == {"1/4"}
    assert check.notes(results) == [
        "the p4d.24xlarge nodes see 1 of their 4 EFA devices: EFA on card 0 alone, as in a subnet the stack "
        "made itself (`--subnet-id` with an existing subnet gets every card)"]
    lone = check.parse(block(NODES[0], (16,)) + block(NODES[1], ()), NODES[:2])
    assert lone[1].status == "EFA SHORT"
    assert lone[1].detail == "sees 0 EFA devices where the other p4d.24xlarge nodes see 1"
    g5 = Node("i-g5", "10.0.0.9", "master", "g5.48xlarge")  # the only node of its type, without EFA
    mixed = check.parse(block(g5, ()) + block(NODES[1], ALL4), [g5, NODES[1]])
    assert [r.status for r in mixed] == ["EFA SHORT", "ok"]
    assert mixed[0].detail == "sees no EFA device while the other nodes use EFA"


def test_no_node_with_efa_is_tcp_everywhere_not_a_failure() -> None:
    """EFA off (or never attached): every rank takes TCP alike, so the check passes with a note."""
    out = "".join(f"== {n.instance_id}\n| gpus=8\n| cpus=96\nrc=0\n" for n in NODES[:2])
    results = check.parse(out, NODES[:2])
    assert [r.status for r in results] == ["ok", "ok"] and [r.fabric for r in results] == ["0/4", "0/4"]
    assert check.notes(results) == [
        "no node sees an EFA device, so jobs use TCP sockets; p4d.24xlarge can have EFA "
        "(`--efa auto` attaches it; see docs/troubleshooting.md)"]


class ShellMaster(ShellRemote):
    """The master's shell on this machine: nothing to connect to."""

    def connect(self) -> Any:
        return None


@dataclass(frozen=True)
class ShellCluster(Cluster):
    def remote(self, **kwargs: Any) -> ShellMaster:
        return ShellMaster()


def test_cluster_check_command_names_the_short_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`cluster check` end to end: check.sh runs in a shell; `ssh` is a stand-in that runs the
    node's probe here with that node's fi_info (this machine's GPUs reported as the type's 8)."""
    nodes = NODES[:2]
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    for node, buses in zip(nodes, (ALL4, (16,)), strict=True):
        (ssh.host(node.private_ip) / "out").write_text(fi_info_output(buses))
        ssh.tool(node.private_ip, "fi_info", f"cat {ssh.host(node.private_ip) / 'out'}")
        (ssh.host(node.private_ip) / "filter").write_text("s/^gpus=.*/gpus=8/\n")
    cluster = ShellCluster(name="demo", kind="aws", master_host="10.0.0.10", ssh_port=22, user="chainer",
                           key_file="/nonexistent", master_host_key=None, shared="/efs", python="python3",
                           network=mpi.Network(cidr="10.0.0.0/24", instance_type=P4D), list_nodes=lambda: nodes)

    def resolve(*args: Any, **kwargs: Any) -> Cluster:
        return cluster

    rc = run_with_boundary(cli, ["cluster", "check", "demo"], Services(resolve=resolve))
    out, err = capsys.readouterr()
    assert rc == 5  # RemoteError: what `cluster check` exits with when a node fails
    master, short = (line.split() for line in out.splitlines()[1:3])
    assert master[:5] == ["i-master", "10.0.0.10", "master", "ok", "8/8"] and master[6:] == ["4/4"]
    assert short[:6] == ["i-w1", "10.0.0.11", "worker", "EFA", "SHORT", "8/8"] and short[7] == "1/4"
    assert "i-w1 (10.0.0.11) efa short: sees 1 EFA device where the other p4d.24xlarge nodes see 4" in err
