"""The agent with local back ends, through the CLI exactly as `local up` calls it."""

from __future__ import annotations

import io
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.node import local_backend

USER = pwd.getpwuid(os.getuid()).pw_name


def _cluster(tmp_path: Path) -> Path:
    d = tmp_path / "lc"
    nodes = [("m", "127.0.0.2", "master", 2), ("w1", "127.0.0.3", "worker", 1)]
    for nid, *_ in nodes:
        (d / "nodes" / nid).mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / "nodes" / nid / "ssh_host_ed25519_key")], check=True)
    (d / "inventory.json").write_text(json.dumps({"nodes": [
        {"instance_id": nid, "private_ip": ip, "role": role, "instance_type": "local", "state": "running",
         "slots": slots, "ssh_port": 2222} for nid, ip, role, slots in nodes]}))
    return d


def _boot(d: Path, nid: str, ip: str, role: str) -> int:
    return run_with_boundary(cli, [
        "node", "boot", "--backend", "local", "--state-dir", str(d), "--role", role, "--node-id", nid,
        "--private-ip", ip, "--ssh-port", "2222", "--host-key", str(d / "nodes" / nid / "ssh_host_ed25519_key.pub"),
        "--user", USER, "--home", str(d / "home"), "--slots", "1", "--mount-point", str(d / "shared")])


def _files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def test_local_boot_two_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _cluster(tmp_path)
    assert _boot(d, "m", "127.0.0.2", "master") == 0
    assert _boot(d, "w1", "127.0.0.3", "worker") == 0
    assert run_with_boundary(cli, ["node", "refresh", "--backend", "local", "--state-dir", str(d),
                                   "--node-id", "m"]) == 0
    home = d / "home"
    ssh = home / ".ssh"
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o700
    assert stat.S_IMODE((ssh / "id_ed25519").stat().st_mode) == 0o600
    assert (ssh / "id_ed25519").read_bytes() == (d / "bucket/cluster-key/id_ed25519").read_bytes()
    assert stat.S_IMODE((d / "bucket/cluster-key/id_ed25519").stat().st_mode) == 0o600
    pub = (ssh / "id_ed25519.pub").read_text().strip()
    assert pub.startswith("ssh-ed25519 ") and pub in (ssh / "authorized_keys").read_text().splitlines()
    assert (home / "hostfile").read_text() == "127.0.0.2 slots=2\n127.0.0.3 slots=1\n"
    m_key = " ".join((d / "nodes/m/ssh_host_ed25519_key.pub").read_text().split()[:2])
    w_key = " ".join((d / "nodes/w1/ssh_host_ed25519_key.pub").read_text().split()[:2])
    assert (ssh / "known_hosts").read_text() == f"[127.0.0.2]:2222 {m_key}\n[127.0.0.3]:2222 {w_key}\n"
    config = (ssh / "config").read_text()
    assert "StrictHostKeyChecking yes" in config and "Port 2222" in config
    mca = (home / ".openmpi/mca-params.conf").read_text()
    assert "btl_tcp_if_include = 127.0.0.0/8\n" in mca and "plm_rsh_args = -p 2222\n" in mca
    assert f"orte_default_hostfile = {home}/hostfile\n" in mca
    assert (d / "shared").is_dir()
    assert (d / "bucket/logs/w1/agent.log").exists()
    assert local_backend.host_keys(d) == {"m": m_key, "w1": w_key}
    # only the master publishes under cluster-key/ (the worker booted last and did not overwrite it)
    assert (d / "bucket/cluster-key/master_host_ed25519.pub").read_text() == m_key + "\n"
    assert [n.ready for n in local_backend.list_nodes(d)] == [True, True]
    # node status: exit 0 and one line per step
    capsys.readouterr()
    assert run_with_boundary(cli, ["node", "status", "--backend", "local", "--state-dir", str(d),
                                   "--node-id", "w1"]) == 0
    out = capsys.readouterr().out
    assert "node w1 (worker): ready" in out and "  ssh       ok" in out


def test_local_second_boot_changes_nothing(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    assert _boot(d, "m", "127.0.0.2", "master") == 0
    assert _boot(d, "w1", "127.0.0.3", "worker") == 0
    before = _files(d / "home"), _files(d / "bucket/cluster-key"), (d / "bucket/nodes/m/ready").read_bytes()
    assert _boot(d, "w1", "127.0.0.3", "worker") == 0
    assert _boot(d, "m", "127.0.0.2", "master") == 0
    after = _files(d / "home"), _files(d / "bucket/cluster-key"), (d / "bucket/nodes/m/ready").read_bytes()
    assert after == before


def test_local_missing_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["node", "boot", "--backend", "local", "--role", "worker"]) == 2
    err = capsys.readouterr().err
    assert "--state-dir is required with --backend local" in err and "--node-id" in err


def test_concurrent_workers_sharing_a_home_end_with_every_node(tmp_path: Path) -> None:
    """`local up` boots workers at once into one home; the shared files end with every node."""
    from concurrent.futures import ThreadPoolExecutor

    from node_sim import local_cluster, local_settings

    from cfn_chainermn.node import agent

    d = tmp_path / "lc"
    ids = ["m", "w1", "w2", "w3"]
    local_cluster(d, ids)

    def boot(i: int) -> bool:
        return agent.boot(local_settings(d, ids, i), echo=io.StringIO()).ready

    assert boot(0)
    with ThreadPoolExecutor(3) as pool:
        assert all(pool.map(boot, [1, 2, 3]))
    assert (d / "home/hostfile").read_text() == "".join(f"127.0.0.{i} slots=1\n" for i in range(2, 6))
    assert len((d / "home/.ssh/known_hosts").read_text().splitlines()) == 4


def test_hostfile_writers_wait_for_the_lock(tmp_path: Path) -> None:
    """Writers of the shared hostfile are serialised, so the last writer saw the others' readiness."""
    import fcntl
    import threading

    from cfn_chainermn.node import agent
    from cfn_chainermn.node.settings import Settings

    d = _cluster(tmp_path)
    assert _boot(d, "m", "127.0.0.2", "master") == 0
    settings = Settings.load(d / "nodes/m/agent.json")
    with (d / "hostfile.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        t = threading.Thread(target=agent.refresh, args=(settings,), kwargs={"echo": io.StringIO()})
        t.start()
        t.join(0.5)
        assert t.is_alive(), "refresh must wait while another writer holds the lock"
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(10)
    assert not t.is_alive()
