"""Job commands find an AWS stack in the region of the cluster.yaml it was created with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cli.services import Services
from cfn_chainermn.errors import StackError


@pytest.fixture
def seen_access() -> list[Any]:
    """The AwsAccess each command resolves its cluster with (filled by `run`'s resolver)."""
    return []


@pytest.fixture
def run(seen_access: list[Any]) -> Callable[[list[str]], int]:
    """Run the CLI with a resolver that records the AwsAccess and stops there (exit 3)."""

    def resolve(name: str, *, state_dir: Any, access: Any, login: bool = True, **choice: Any) -> Any:
        seen_access.append(access)
        raise StackError("stopped before any AWS call")

    return lambda args: run_with_boundary(cli, args, Services(resolve=resolve))


@pytest.mark.parametrize("command", [["hostfile", "demo"], ["job", "list", "demo"], ["ssh", "demo", "--", "true"],
                                     ["cluster", "check", "demo"]])
def test_region_from_config_unless_given(command: list[str], tmp_path: Path, seen_access: list[Any],
                                         run: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("region: ap-northeast-1\n")
    head, tail = (command[:-2], command[-2:]) if "--" in command else (command, [])
    assert run([*head, "--config", str(cfg), *tail]) == 3
    assert run([*head, "--config", str(cfg), "--region", "eu-west-1", *tail]) == 3
    assert [a.region for a in seen_access] == ["ap-northeast-1", "eu-west-1"]
    assert capsys.readouterr().err.count("error: stopped before any AWS call") == 2


def test_identity_file_from_config_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                seen_access: list[Any], run: Callable[[list[str]], int],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CFN_CHAINERMN_IDENTITY_FILE", raising=False)
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("region: us-east-1\nidentity_file: ~/.ssh/demo.pem\n")
    assert run(["job", "list", "demo", "--config", str(cfg)]) == 3
    assert run(["job", "list", "demo", "--config", str(cfg), "-i", "other.pem"]) == 3
    monkeypatch.setenv("CFN_CHAINERMN_IDENTITY_FILE", "env.pem")
    assert run(["job", "list", "demo", "--config", str(cfg)]) == 3
    # the ~ is expanded where the key is opened
    assert [a.identity_file for a in seen_access] == ["~/.ssh/demo.pem", "other.pem", "env.pem"]
    capsys.readouterr()

