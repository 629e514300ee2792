"""The agent executed end to end on AWS back ends: moto (EC2 + S3) on 127.0.0.1, an IMDSv2
stand-in per node, a temporary root directory per node, CloudFormation signals pinned by Stubber."""

from __future__ import annotations

import json
import stat
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from node_sim import FSTAB, GUARD_AGAIN, GUARD_FIRST_BOOT, USER_KEY, SimCluster

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cluster import inventory
from cfn_chainermn.node import agent
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.state import State


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    skip = ("var/lib/cfn-chainermn/state.json", "var/log/cfn-chainermn/agent.log")
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file() and str(p.relative_to(root)) not in skip}


def test_master_and_two_workers_end_to_end(sim_cluster: SimCluster, capsys: pytest.CaptureFixture[str]) -> None:
    c = sim_cluster
    m, w1, w2 = c.nodes["master"], c.nodes["w1"], c.nodes["w2"]
    for name in ("master", "w1", "w2"):
        assert c.boot(name).ready
    for stub in c.stubs:  # each node sent exactly the pinned SUCCESS signal
        stub.assert_no_pending_responses()
    # refresh on the master through the CLI, as the systemd timer runs it (settings from agent.json)
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(m.root)]) == 0

    obj = c.s3.head_object(Bucket=c.bucket, Key="cluster-key/id_ed25519")
    assert obj["ServerSideEncryption"] == "AES256"
    # the CLI's trust anchor: the master's host key under cluster-key/ (workers' IAM cannot write
    # there), SSE-S3 although moto's bucket has no default encryption. Workers booted after the
    # master, so had they written it, it would now hold w2's key.
    pinned = c.s3.head_object(Bucket=c.bucket, Key="cluster-key/master_host_ed25519.pub")
    assert pinned["ServerSideEncryption"] == "AES256"
    assert c.get("cluster-key/master_host_ed25519.pub").decode() == m.host_key + "\n"
    assert inventory.master_host_key(c.s3, c.bucket) == m.host_key
    cluster_pub = c.get("cluster-key/id_ed25519.pub").decode().strip()
    expected_hosts = "".join(f"{n.private_ip} slots={s}\n" for n, s in ((m, 4), *sorted(
        [(w1, 1), (w2, 1)], key=lambda x: tuple(int(p) for p in x[0].private_ip.split(".")))))
    for node in (m, w1, w2):
        home = node.root / "home/chainer"
        ssh = home / ".ssh"
        assert stat.S_IMODE(ssh.stat().st_mode) == 0o700
        assert stat.S_IMODE((ssh / "id_ed25519").stat().st_mode) == 0o600
        assert stat.S_IMODE((ssh / "authorized_keys").stat().st_mode) == 0o600
        assert (ssh / "id_ed25519").read_bytes() == c.get("cluster-key/id_ed25519")
        assert (ssh / "id_ed25519").read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        auth = (ssh / "authorized_keys").read_text().splitlines()
        assert cluster_pub in auth and USER_KEY in auth
        config = (ssh / "config").read_text()
        assert "StrictHostKeyChecking yes" in config and "Port" not in config
        assert (node.root / "etc/fstab").read_text() == FSTAB + "\n"
        assert node.root.joinpath("var/lib/cfn-chainermn/commands.log").read_text().splitlines() == [
            *GUARD_FIRST_BOOT, "cfn-chainermn-stack install /opt/chainer",  # recorded: a test root runs no pip
            "useradd -m -d /home/chainer -s /bin/bash -U -p '*' chainer", "mount /efs",
            "systemctl daemon-reload", "systemctl enable --now cfn-chainermn-refresh.timer",
            *(GUARD_AGAIN if node is m else [])]  # the master was refreshed once: probes only
        mca = (home / ".openmpi/mca-params.conf").read_text()
        assert f"btl_tcp_if_include = {c.subnet_cidr}\n" in mca and f"oob_tcp_if_include = {c.subnet_cidr}\n" in mca
        assert "plm_rsh_no_tree_spawn = 1\n" in mca and "orte_default_hostfile = /home/chainer/hostfile\n" in mca
        assert "rtc = ^hwloc\n" in mca and "plm_rsh_args" not in mca
        assert json.loads(c.get(f"nodes/{node.instance_id}/ready"))["private_ip"] == node.private_ip
        assert c.get(f"nodes/{node.instance_id}/host_ed25519.pub").decode().strip() == node.host_key
        for name in ("ready", "host_ed25519.pub"):
            head = c.s3.head_object(Bucket=c.bucket, Key=f"nodes/{node.instance_id}/{name}")
            assert head["ServerSideEncryption"] == "AES256"
        assert (node.root / "etc/systemd/system/cfn-chainermn-refresh.timer").exists()
        service = (node.root / "etc/systemd/system/cfn-chainermn-refresh.service").read_text()
        assert " -m cfn_chainermn node refresh --jitter 20\n" in service  # each node its own share of 20 s
    # a worker's boot read the view the master published at its own boot (the master alone): the
    # master's next refresh adds the workers, the workers' next refresh follows (docs/node-agent.md)
    at_boot = {n.name: (n.root / "home/chainer/hostfile").read_text() for n in (w1, w2)}
    assert at_boot == {"w1": f"{m.private_ip} slots=4\n", "w2": f"{m.private_ip} slots=4\n"}
    for name in ("w1", "w2"):
        agent.refresh(c.settings(name), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    # after one refresh of each, every node sees every ready node; known_hosts has all host keys
    for node in (m, w1, w2):
        home = node.root / "home/chainer"
        assert (home / "hostfile").read_text() == expected_hosts
        assert (node.root / "opt/amazon/openmpi/etc/openmpi-default-hostfile").read_text() == expected_hosts
        known = sorted((home / ".ssh/known_hosts").read_text().splitlines())
        assert known == sorted(f"{n.private_ip} {n.host_key}" for n in (m, w1, w2))
    # the IMDS stand-ins saw a token PUT first and no request without a token
    for node in (m, w1, w2):
        reqs = node.imds.requests
        assert reqs[0][:2] == ("PUT", "/latest/api/token") and all(ok for *_, ok in reqs)
    capsys.readouterr()
    assert run_with_boundary(cli, ["node", "status", "--root", str(w1.root)]) == 0
    out = capsys.readouterr().out
    assert f"node {w1.instance_id} (worker): ready" in out
    assert "signal    ok        SUCCESS sent to demo/WorkerGroup" in out


def test_imds_refuses_requests_without_token(sim_cluster: SimCluster) -> None:
    url = sim_cluster.nodes["master"].imds.url
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/latest/meta-data/instance-id", timeout=30)
    assert info.value.code == 401


def test_worker_waits_for_master_key(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    result: dict[str, object] = {}

    def worker() -> None:
        try:
            result["state"] = c.boot("w1")
        except Exception as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(1.2)
    assert t.is_alive(), "the worker must still be waiting for the key"
    c.boot("master")
    t.join(30)
    assert "error" not in result, result.get("error")
    state = result["state"]
    assert isinstance(state, State) and state.ready
    assert "fetched the cluster key after" in state.steps["ssh"]["detail"]
    w1 = c.nodes["w1"]
    assert (w1.root / "home/chainer/.ssh/id_ed25519").read_bytes() == c.get("cluster-key/id_ed25519")


def test_node_that_stops_being_ready_drops_out(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    for name in ("master", "w1", "w2"):
        c.boot(name)
    m, w1, w2 = c.nodes["master"], c.nodes["w1"], c.nodes["w2"]
    c.s3.delete_object(Bucket=c.bucket, Key=f"nodes/{w1.instance_id}/ready")  # w1 no longer ready
    c.ec2.stop_instances(InstanceIds=[w2.instance_id])  # w2 no longer running
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(m.root)]) == 0
    assert (m.root / "home/chainer/hostfile").read_text() == f"{m.private_ip} slots=4\n"


def test_second_boot_changes_nothing(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    c.boot("master")
    c.boot("w1")
    for name in ("master", "w1"):  # the timers' work: the master publishes w1, then w1 reads it
        agent.refresh(c.settings(name), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    roots = [c.nodes[n].root for n in ("master", "w1")]
    before = [_snapshot(r) for r in roots], c.get("cluster-key/id_ed25519"), c.get(
        f"nodes/{c.nodes['w1'].instance_id}/ready")
    c.boot("master")
    c.boot("w1")
    after = [_snapshot(r) for r in roots], c.get("cluster-key/id_ed25519"), c.get(
        f"nodes/{c.nodes['w1'].instance_id}/ready")
    journal = "var/lib/cfn-chainermn/commands.log"  # the second boot only probed the IMDS rules
    for old, new in zip(before[0], after[0], strict=True):
        was, now = old.pop(journal), new.pop(journal)
        assert now[0].decode().splitlines() == was[0].decode().splitlines() + GUARD_AGAIN
    assert after == before
    assert (roots[0] / "etc/fstab").read_text().count("fs-0123456789abcdef0") == 1


def test_cli_boot_with_the_template_flags(sim_cluster: SimCluster, capsys: pytest.CaptureFixture[str]) -> None:
    """The exact AGENT COMMAND LINE of the UserData, plus the test-only --root/--endpoint-url/--imds-url."""
    from cfn_chainermn import aws
    from cfn_chainermn.cli.services import Services

    c = sim_cluster
    m = c.nodes["master"]

    def connect(profile: str | None, region: str | None, endpoint_url: str | None) -> aws.Aws:
        assert (profile, region, endpoint_url) == (None, "us-east-1", c.moto_url)  # the flags' region and endpoint
        real = aws.connect(profile, region, endpoint_url)
        real._clients["cloudformation"] = c.clients("master").cfn  # the signal pinned by a Stubber
        return real

    rc = run_with_boundary(cli, [
        "node", "boot", "--role", "master", "--stack", "demo", "--region", "us-east-1", "--bucket", c.bucket,
        "--signal-resource", "ClusterMaster", "--mount-point", "/efs", "--efs-id", "fs-0123456789abcdef0",
        "--root", str(m.root), "--endpoint-url", c.moto_url, "--imds-url", m.imds.url], Services(connect=connect))
    assert rc == 0, capsys.readouterr().err
    c.stubs[-1].assert_no_pending_responses()
    assert f"node {m.instance_id} (master): ready" in capsys.readouterr().out
    assert (m.root / "home/chainer/hostfile").read_text() == f"{m.private_ip} slots=4\n"


def test_missing_host_key_is_generated(sim_cluster: SimCluster) -> None:
    """An image whose sshd has no host key yet: the agent runs `ssh-keygen -A` (under the root)."""
    c = sim_cluster
    m = c.nodes["master"]
    for p in (m.root / "etc/ssh").iterdir():
        p.unlink()
    c.boot("master")
    made = (m.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    assert made[0] == "ssh-ed25519"
    assert c.get(f"nodes/{m.instance_id}/host_ed25519.pub").decode().split() == made[:2]
