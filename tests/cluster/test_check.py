"""`cluster check`: the probe script runs every ssh at once; its output is read per node."""

from __future__ import annotations

import subprocess

from cfn_chainermn.cluster import check
from cfn_chainermn.cluster.hostfile import Node

NODES = [
    Node("i-master", "10.0.0.10", "master", "p3.16xlarge"),
    Node("i-w1", "10.0.0.11", "worker", "p3.16xlarge"),
    Node("i-w2", "10.0.0.12", "worker", "p3.16xlarge"),
    Node("i-w3", "10.0.0.13", "worker", "p3.16xlarge"),
]


def test_probe_script_is_valid_shell_and_parallel() -> None:
    script = check.probe_script(NODES, 22, timeout=5)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert script.count("ConnectTimeout=5") == 4
    assert script.count(") > ") == 4 and script.count("&\n") == 4  # one background ssh per node
    assert "\nwait\n" in script


def test_parse_ok_mismatch_refused_timeout_and_missing() -> None:
    out = "\n".join([
        "== i-master", "gpus=8", "cpus=64", "rc=0",
        "== i-w1", "gpus=4", "cpus=64", "rc=0",
        "== i-w2", "ssh: connect to host 10.0.0.12 port 22: Connection refused", "rc=255",
        "== i-x-unknown", "rc=0",
    ]) + "\n"
    results = check.parse(out, NODES)
    assert [r.status for r in results] == ["ok", "GPU MISMATCH", "UNREACHABLE", "UNREACHABLE"]
    assert results[0].gpus == 8 and results[0].cpus == 64 and results[0].expected_gpus == 8
    assert results[2].detail == "ssh: connect to host 10.0.0.12 port 22: Connection refused"
    assert results[3].detail == "no result"
    assert [r.node.instance_id for r in check.failures(results)] == ["i-w1", "i-w2", "i-w3"]
    timed_out = check.parse("== i-w3\nrc=124\n", NODES[3:])
    assert timed_out[0].detail == "no answer within 15s"


def test_local_nodes_take_the_hosts_gpus_and_table_lines_up() -> None:
    """Local nodes see this machine's GPUs, whatever it has: none, or a CI host's."""
    nodes = [Node("master", "127.0.0.2", "master", "local", slots_override=1),
             Node("worker-1", "127.0.0.3", "worker", "local", slots_override=1)]
    results = check.parse("== master\ngpus=0\ncpus=2\nrc=0\n== worker-1\ngpus=4\ncpus=2\nrc=0\n", nodes)
    assert [r.status for r in results] == ["ok", "ok"] and check.failures(results) == []
    assert check.table(results) == (
        "NODE      ADDRESS    ROLE    SSH  GPUS  CPUS  EFA  DETAIL\n"
        "master    127.0.0.2  master  ok   0     2     tcp\n"
        "worker-1  127.0.0.3  worker  ok   4     2     tcp\n")
    assert check.notes(results) == []
