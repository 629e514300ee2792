"""Commands after `create` find the stack in the region of the cluster.yaml it was made with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cli.services import Services
from cfn_chainermn.errors import StackError


@pytest.mark.parametrize("command", [["status"], ["outputs"], ["events"], ["watch"], ["delete", "--yes"],
                                     ["scale", "--workers", "2"]])
def test_region_comes_from_config_unless_given(command: list[str], tmp_path: Path, run_cli: Any,
                                               services: Services) -> None:
    seen: list[str | None] = []

    def connect(profile: str | None, region: str | None, endpoint_url: str | None) -> Any:
        seen.append(region)
        raise StackError("stopped before any AWS call")

    services.connect = connect
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("name: demo\nregion: eu-west-1\n")
    verb, *rest = command
    assert run_cli("stack", verb, "demo", *rest, "--config", str(cfg)).code == 3
    assert run_cli("stack", verb, "demo", *rest, "--config", str(cfg), "--region", "us-west-2").code == 3
    assert run_cli("stack", verb, "demo", *rest).code == 3
    assert seen == ["eu-west-1", "us-west-2", None]


def test_bad_config_is_a_usage_error_before_any_call(tmp_path: Path, run_cli: Any, no_aws: Any) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("region: mars-1\n")
    result = run_cli("stack", "status", "demo", "--config", str(cfg))
    assert result.code == 2
    assert result.err.strip() == "error: region: 'mars-1' is not an AWS region name (for example us-east-1)"
