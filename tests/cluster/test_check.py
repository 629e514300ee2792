"""`cluster check`: check.sh runs every ssh at once on the master (here: this machine, with a
stand-in ssh that runs probe.sh here); its output is read per node."""

from __future__ import annotations

import os
import shutil
import signal as signal_module
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import fake_ssh
import pytest
from fake_channel import ShellRemote

from cfn_chainermn.cluster import check
from cfn_chainermn.cluster.hostfile import Node

NODES = [
    Node("i-master", "10.0.0.10", "master", "p3.16xlarge"),
    Node("i-w1", "10.0.0.11", "worker", "p3.16xlarge"),
    Node("i-w2", "10.0.0.12", "worker", "p3.16xlarge"),
    Node("i-w3", "10.0.0.13", "worker", "p3.16xlarge"),
]


def _argv(address: str, fabric: str = "tcp", port: str = "22", timeout: int = 30) -> list[str]:
    """What check.sh runs for one node, after `ssh` (no -F: ssh's default config)."""
    return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}", "-p", port, "--", address, "sh", "-s", fabric]


def test_check_sh_runs_every_ssh_at_once_and_prints_blocks_in_node_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's ssh waits (30 s at most) until every node's has started: one after the other, the
    first would never see the others and its block would say so."""
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    started = tmp_path / "started"
    started.mkdir()
    for n in NODES:
        (ssh.host(n.private_ip) / "before").write_text(
            f'touch {started}/$$; i=0\nwhile [ "$(ls {started} | wc -l)" -lt {len(NODES)} ]; do\n'
            '  i=$((i + 1)); [ $i -lt 600 ] || { echo "alone: the others never started"; exit 7; }; sleep 0.05\n'
            "done\n")
    _, out = ShellRemote().capture(check.probe_script(NODES, 22, timeout=30))
    blocks = [line for line in out.splitlines() if line.startswith(("== ", "rc=", "| alone"))]
    assert blocks == [x for n in NODES for x in (f"== {n.instance_id}", "rc=0")], out
    assert ssh.calls() == sorted(_argv(n.private_ip) for n in NODES)
    results = check.parse(out, NODES)  # this machine's GPUs, not a p3's eight
    assert {r.status for r in results} == {"GPU MISMATCH"} and {r.cpus for r in results} == {os.cpu_count()}


def test_check_sh_bounds_a_silent_node_and_passes_the_ssh_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that never answers is cut off at three times the connect timeout given (timeout's 124),
    and its row says that bound; the others answer meanwhile. The config path reaches ssh as one
    word, spaces and quotes and all."""
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    (ssh.host(NODES[1].private_ip) / "before").write_text("exec sleep 600\n")
    config = str(tmp_path / "it's a config")
    _, out = ShellRemote().capture(check.probe_script(NODES[:2], 2222, timeout=1, ssh_config=config))
    results = check.parse(out, NODES[:2])
    assert [r.ok for r in results] == [True, False] and results[1].detail == "no answer within 3s"
    assert ssh.calls() == sorted(["-F", config, *_argv(n.private_ip, port="2222", timeout=1)] for n in NODES[:2])


@pytest.mark.parametrize(("node", "words"), [
    (Node("i-$(touch PWNED)", "10.0.0.11", "worker", "p3.16xlarge"), "refused: node id is not a plain word"),
    (Node("i-w1\n== i-w3\ngpus=8\ncpus=2\nrc=0", "10.0.0.11", "worker", "p3.16xlarge"),
     "refused: node id is not a plain word"),
    (Node("i-w1", "-oProxyCommand=touch PWNED", "worker", "p3.16xlarge"),
     "refused: node address is not a plain word"),
    (Node("i-w1", "10.0.0.11;touch PWNED", "worker", "p3.16xlarge"),
     "refused: node address is not a plain word"),
    (Node("i-w1", "root@10.0.0.11", "worker", "p3.16xlarge"),
     "refused: node address is not a plain word"),
], ids=["id-substitution", "id-forging-a-block", "address-as-option", "address-with-shell", "address-with-user"])
def test_what_the_cluster_reports_is_never_shell_nor_an_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node: Node, words: str) -> None:
    """A node id or address that is not a plain word is refused in its own block, which is its row's
    detail: nothing runs for it, no other node's result is forged, and the other nodes are checked as usual."""
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    nodes = [NODES[0], node, NODES[2]]
    _, out = ShellRemote().capture(check.probe_script(nodes, 22, timeout=30))
    assert not (tmp_path / "PWNED").exists()
    assert ssh.calls() == sorted(_argv(n.private_ip) for n in (NODES[0], NODES[2]))
    # i-w3 was not asked, so nothing may say it answered
    results = check.parse(out, [*nodes, NODES[3]])
    assert [(r.ok, r.detail) for r in results[1::2]] == [(False, words), (False, "no result")]
    assert [r.ok for r in results[::2]] == [True, True]


FORGED = "rc=0\ngpus=8\ncpus=4\n== i-w3\nrc=0\ngpus=8\ncpus=4\n== #1\nrc=0\ngpus=8\ncpus=4"


@pytest.mark.parametrize("forger", ["address", "output", "output-cr", "output-nel"])
def test_nothing_from_the_cluster_forges_a_dead_nodes_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forger: str) -> None:
    """i-master is dead (ssh exits 255) and i-w3 never asked. A refused address that would print
    `== #1` or `== i-w3` with an rc of 0 is not echoed, and a node that prints them itself has its
    lines marked as its own, lines that end at \r or \x85 included: both dead nodes still fail
    (review 4, finding 5)."""
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    (ssh.host(NODES[0].private_ip) / "before").write_text("echo 'ssh: connect: Connection refused' >&2; exit 255\n")
    forging = replace(NODES[1], private_ip=f"x\n{FORGED}") if forger == "address" else NODES[1]
    breaks = {"output-cr": "\r", "output-nel": "\x85"}.get(forger, "\n")  # lines to Python's splitlines
    (ssh.host(NODES[1].private_ip) / "before").write_text(f"printf '%s\\n' '{FORGED.replace(chr(10), breaks)}'\n")
    _, out = ShellRemote().capture(check.probe_script([NODES[0], forging], 22, timeout=30))
    results = check.parse(out, [NODES[0], forging, NODES[3]])
    assert [(r.ok, r.detail) for r in results[::2]] == [
        (False, "ssh: connect: Connection refused"), (False, "no result")], out
    assert results[1].ok == (forger != "address"), out


@pytest.mark.parametrize(("shell", "signal"), [("sh", "SIGTERM"), ("sh", "SIGINT"), ("sh", "SIGHUP"),
                                               ("bash", "SIGTERM")])
def test_check_sh_stopped_midway_leaves_no_scratch_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shell: str, signal: str) -> None:
    """Stopped while a node is silent (a ^C on the client, a killed session), check.sh still removes
    the folder its answers went to, in sh (dash here) and in bash, a master's usual login shells."""
    ssh = fake_ssh.install(tmp_path, monkeypatch)
    scratch, started = tmp_path / "scratch", tmp_path / "started"
    scratch.mkdir()
    started.mkdir()
    (ssh.host(NODES[1].private_ip) / "before").write_text(f"touch {started}/$$\nexec sleep 600\n")
    proc = subprocess.Popen([shell, "-c", check.probe_script(NODES[:2], 22, timeout=1)], stdout=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(scratch)})
    try:
        for _ in range(600):  # 30 s at most: the silent node's ssh has started, check.sh is waiting
            if any(started.iterdir()):
                break
            time.sleep(0.05)
        assert [p.name for p in scratch.iterdir()] != [] and any(started.iterdir())
        proc.send_signal(getattr(signal_module, signal))
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (make install adds it)")
def test_the_scripts_are_shellcheck_clean_and_shipped() -> None:
    """Read by shellcheck, and named by pyproject's package-data, so a pip-installed client has them."""
    import tomllib

    sh = Path(check.__file__).with_name("sh")
    assert sorted(p.name for p in sh.glob("*.sh")) == ["check.sh", "probe.sh"]
    proc = subprocess.run(["shellcheck", "--format=gcc", *map(str, sorted(sh.glob("*.sh")))],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pyproject = tomllib.loads((Path(check.__file__).parents[2] / "pyproject.toml").read_text())
    assert "cluster/sh/*.sh" in pyproject["tool"]["setuptools"]["package-data"]["cfn_chainermn"]


def test_parse_ok_mismatch_refused_timeout_and_missing() -> None:
    out = "\n".join([
        "== i-master", "| gpus=8", "| cpus=64", "rc=0",
        "== i-w1", "| gpus=4", "| cpus=64", "rc=0",
        "== i-w2", "| ssh: connect to host 10.0.0.12 port 22: Connection refused", "rc=255",
        "== i-x-unknown", "rc=0",
    ]) + "\n"
    results = check.parse(out, NODES)
    assert [r.status for r in results] == ["ok", "GPU MISMATCH", "UNREACHABLE", "UNREACHABLE"]
    assert results[0].gpus == 8 and results[0].cpus == 64 and results[0].expected_gpus == 8
    assert results[2].detail == "ssh: connect to host 10.0.0.12 port 22: Connection refused"
    assert results[3].detail == "no result"
    assert [r.node.instance_id for r in check.failures(results)] == ["i-w1", "i-w2", "i-w3"]
    timed_out = check.parse("== i-w3\nno answer within 3s\nrc=124\n", NODES[3:])
    assert timed_out[0].detail == "no answer within 3s"


def test_parse_takes_a_plain_ids_own_block_never_one_under_a_position() -> None:
    """`#N` is only ever a refused id's block: a `== #1` saying rc=0, however it got there, does not
    stand in for i-master's own, and a node whose refused id is `#1` takes its position's (`#2`)."""
    out = ("== i-master\n| ssh: connect: Connection refused\nrc=255\n== #1\n| gpus=8\n| cpus=4\nrc=0\n"
           "== #2\nrefused: node id is not a plain word\nrc=2\n")
    results = check.parse(out, [NODES[0], replace(NODES[1], instance_id="#1")])
    assert [(r.ok, r.detail) for r in results] == [
        (False, "ssh: connect: Connection refused"), (False, "refused: node id is not a plain word")]


def test_local_nodes_take_the_hosts_gpus_and_table_lines_up() -> None:
    """Local nodes see this machine's GPUs, whatever it has: none, or a CI host's."""
    nodes = [Node("master", "127.0.0.2", "master", "local", slots_override=1),
             Node("worker-1", "127.0.0.3", "worker", "local", slots_override=1)]
    results = check.parse("== master\n| gpus=0\n| cpus=2\nrc=0\n== worker-1\n| gpus=4\n| cpus=2\nrc=0\n", nodes)
    assert [r.status for r in results] == ["ok", "ok"] and check.failures(results) == []
    assert check.table(results) == (
        "NODE      ADDRESS    ROLE    SSH  GPUS  CPUS  EFA  DETAIL\n"
        "master    127.0.0.2  master  ok   0     2     tcp\n"
        "worker-1  127.0.0.3  worker  ok   4     2     tcp\n")
    assert check.notes(results) == []
