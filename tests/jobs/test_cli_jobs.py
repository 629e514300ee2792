"""Usage errors of the job commands: one line, exit 2, before any connection is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cli.services import Services


@pytest.mark.parametrize(("args", "fragment"), [
    (["-n", "0"], "Invalid value for '-n'"),
    (["-n", "2", "-N", "0"], "Invalid value for '-N'"),
    (["-n", "2", "--env", "NOPE"], "--env: 'NOPE' is not NAME=VALUE"),
])
def test_bad_submit_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 fragment: str) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    rc = run_with_boundary(cli, ["job", "submit", "local", "--state-dir", str(tmp_path), *args, str(script)])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err and err.startswith("error: ")
    assert "Traceback" not in err


def test_unknown_job_id_is_refused_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("logs", "cancel"):
        rc = run_with_boundary(cli, ["job", command, "local", "../etc", "--state-dir", str(tmp_path)])
        assert rc == 2
        assert "JOB: '../etc' is not a job id; `cfn-chainermn job list NAME` shows them" in capsys.readouterr().err


def test_ssh_n_without_a_command_is_refused_before_any_lookup(capsys: pytest.CaptureFixture[str]) -> None:
    def resolve(*args: object, **kwargs: object) -> Any:
        raise AssertionError("looked the cluster up")

    assert run_with_boundary(cli, ["ssh", "demo", "-n"], Services(resolve=resolve)) == 2
    assert capsys.readouterr().err.startswith("error: -n needs a COMMAND (after --)")


def test_no_local_cluster_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.json").write_text('{"name": "other"}')
    rc = run_with_boundary(cli, ["cluster", "check", "local", "--state-dir", str(tmp_path)])
    assert rc == 2
    assert "no local cluster in" in capsys.readouterr().err


def test_files_that_clash_with_the_job_folder_are_refused(tmp_path: Path) -> None:
    from cfn_chainermn.errors import ConfigError
    from cfn_chainermn.jobs import folder as job_folder
    from cfn_chainermn.jobs import mpi

    script = tmp_path / "train.py"
    script.write_text("")
    other = tmp_path / "sub"
    other.mkdir()
    for name in ("hostfile", "train.py"):
        clash = other / name
        clash.write_text("")
        with pytest.raises(ConfigError, match=rf"^--files: '{name}' clashes"):
            job_folder.prepare(shared="/s", script=script, files=[clash], hostfile_text="",
                         job=mpi.Job(program="train.py", np=1),
                         net=mpi.Network(cidr="127.0.0.0/8", instance_type="local"))
