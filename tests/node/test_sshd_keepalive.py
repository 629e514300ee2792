"""Nodes' sshd drops a client whose path died, so an attached job's session ends (issue 12, item 7).

The client side (cluster/keepalive.py) notices a dead path within a minute; without the server
side, a job whose client vanished runs on unseen where no new connection can cancel it.
"""

from __future__ import annotations

from pathlib import Path

from node_sim import SimCluster

from cfn_chainermn.local.lifecycle import sshd_config
from cfn_chainermn.node import agent
from cfn_chainermn.node.aws_platform import SSHD_DROP_IN
from cfn_chainermn.node.system import System

RELOAD = "systemctl try-reload-or-restart ssh.service sshd.service"


def test_an_image_with_sshd_config_d_gets_the_keepalive_and_one_reload(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    root = c.nodes["master"].root
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    drop_in = (root / SSHD_DROP_IN.lstrip("/")).read_text()
    assert "ClientAliveInterval 15\n" in drop_in and "ClientAliveCountMax 4\n" in drop_in
    assert System(root).recorded().count(RELOAD) == 1
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready  # a second boot
    assert System(root).recorded().count(RELOAD) == 1  # unchanged file: no second reload


def test_an_image_without_sshd_config_d_is_left_as_it_is(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    root = c.nodes["master"].root
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    assert not (root / "etc/ssh/sshd_config.d").exists()
    assert RELOAD not in System(root).recorded()


def test_local_nodes_sshd_drops_dead_clients(tmp_path: Path) -> None:
    conf = sshd_config(root=tmp_path, node="master", ip="127.0.0.2", port=2200, user="chainer",
                       home="/home/chainer", as_root=True, python="/usr/bin/python3").splitlines()
    assert "ClientAliveInterval 15" in conf and "ClientAliveCountMax 4" in conf
