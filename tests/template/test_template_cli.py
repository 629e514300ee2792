"""`cfn-chainermn template`: stdout, -o, --format json, config and flags as Defaults, and clean
usage errors (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary, state
from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.template import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_debug() -> None:
    state.debug = False


def test_stdout_is_the_released_yaml() -> None:
    result = CliRunner().invoke(cli, ["template"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (ROOT / "templates" / "chainermn-cluster.yaml").read_text()


def test_output_file_and_json(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    result = CliRunner().invoke(cli, ["template", "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text() == render(ClusterConfig(), "json")
    assert f"wrote {out} (" in result.stderr and "the node agent included" in result.stderr
    assert "up to 1,000,000 bytes" in result.stderr  # S3's limit: no template fits inline any more
    assert [p.name for p in out.parent.iterdir()] == ["cluster.json"]  # no temporary file left


def test_config_file_and_flags_become_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text((ROOT / "examples" / "cluster.yaml").read_text())
    result = CliRunner().invoke(cli, ["template", "--config", str(cfg), "--workers", "7", "--efs", "none"])
    assert result.exit_code == 0, result.output
    params = yaml.safe_load(result.stdout)["Parameters"]
    assert params["WorkerCount"]["Default"] == "7"
    assert params["EfsMode"]["Default"] == "none"
    assert params["KeyName"]["Default"] == "my-key"
    assert params["SshCidr"]["Default"] == "203.0.113.7/32"
    assert params["MasterInstanceType"]["Default"] == "g6.12xlarge"


def test_json_parses_and_matches_yaml() -> None:
    result = CliRunner().invoke(cli, ["template", "--format", "json", "--instance-type", "g5.12xlarge"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == yaml.safe_load(render(ClusterConfig(instance_type="g5.12xlarge"), "yaml"))


@pytest.mark.parametrize(("args", "expect"), [
    (["template", "--format", "xml"], "Invalid value for '--format'"),
    (["template", "--bogus"], "No such option '--bogus'"),
    (["template", "--workers", "-3"], "workers: -3 is out of range"),
    (["template", "--efs", "fs-zz", "--efs-security-group", "sg-0123456789abcdef0"], "efs.file_system_id: 'fs-zz'"),
    (["template", "--ssh-cidr", "0.0.0.0/0"], "--allow-ssh-from-anywhere"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], captured.err
    assert captured.out == ""


def test_unwritable_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert run_with_boundary(cli, ["template", "-o", str(tmp_path / "file" / "x.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: -o: cannot write")


def test_every_problem_is_reported_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["template", "--efs", "fs-zz", "--vpc-cidr", "10.0.0.0/33"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert {line.split(":")[1].strip() for line in err} == {
        "efs.file_system_id", "efs.security_group_id", "network.vpc_cidr"}
