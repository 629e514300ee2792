"""cluster.json as one typed object: the same file format, so a file an earlier version wrote loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfn_chainermn.errors import ConfigError
from cfn_chainermn.local.state import STATE_FILE, LocalNode, LocalState, load

# What `local up` has always written (keys in this order), as root with two nodes.
WRITTEN = {
    "name": "local", "user": "chainer", "home": "/s/home/chainer", "port": 41235, "python": "/v/bin/python",
    "as_root": True, "shared": "/s/shared", "master_id": "master", "master_ip": "127.0.0.2", "created_user": True,
    "created_run_sshd": False,
    "nodes": [{"id": "master", "ip": "127.0.0.2", "slots": 1}, {"id": "worker-1", "ip": "127.0.0.3", "slots": 1}],
}


def test_a_written_file_loads_and_saves_byte_for_byte(tmp_path: Path) -> None:
    text = json.dumps(WRITTEN, indent=2) + "\n"
    (tmp_path / STATE_FILE).write_text(text)
    state = load(tmp_path)
    assert state is not None
    assert (state.user, state.home, state.port, state.shared) == ("chainer", Path("/s/home/chainer"), 41235,
                                                                  Path("/s/shared"))
    assert state.nodes == (LocalNode("master", "127.0.0.2", 1), LocalNode("worker-1", "127.0.0.3", 1))
    assert state.key_file == Path("/s/home/chainer/.ssh/id_ed25519")
    (tmp_path / STATE_FILE).unlink()
    state.save(tmp_path)
    assert (tmp_path / STATE_FILE).read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temporary file left


def test_keys_an_older_file_may_lack_take_their_old_defaults(tmp_path: Path) -> None:
    minimal = {k: WRITTEN[k] for k in ("name", "user", "home", "port", "python", "shared", "master_id", "master_ip")}
    (tmp_path / STATE_FILE).write_text(json.dumps(minimal))
    state = load(tmp_path)
    assert state == LocalState(name="local", user="chainer", home=Path("/s/home/chainer"), port=41235,
                               python="/v/bin/python", shared=Path("/s/shared"), master_id="master",
                               master_ip="127.0.0.2", as_root=True, created_user=False, created_run_sshd=False,
                               nodes=())


def test_no_file_or_another_clusters_file_is_none(tmp_path: Path) -> None:
    assert load(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"name": "other"}')
    assert load(tmp_path, name="local") is None


@pytest.mark.parametrize("text", ["{", "[]", '{"name": "local"}', json.dumps({**WRITTEN, "port": "x"})])
def test_a_broken_file_is_a_usage_error_naming_it(tmp_path: Path, text: str) -> None:
    (tmp_path / STATE_FILE).write_text(text)
    with pytest.raises(ConfigError, match=rf"--state-dir: cannot read {tmp_path / STATE_FILE}: "):
        load(tmp_path)
