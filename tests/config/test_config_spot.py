"""`spot_instance_types` (issue 13 item 3): more worker types for Spot, each alike where a
worker's role depends on it; anything else is one line naming the field and the fix (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.config.model import build
from cfn_chainermn.errors import ConfigError

SPOT = {"spot_workers": True, "worker_instance_type": "g6.12xlarge"}


def problems(**data: object) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        build(data)
    return exc.value.problems


def test_types_of_the_same_gpu_count_are_listed_in_order() -> None:
    cfg = build({**SPOT, "spot_instance_types": "g5.12xlarge,g6e.12xlarge"})
    assert cfg.spot_types == ("g5.12xlarge", "g6e.12xlarge")
    assert build({}).spot_types == ()


@pytest.mark.parametrize(("data", "line"), [
    ({**SPOT, "spot_instance_types": "g5.xlarge"},
     "spot_instance_types: g5.xlarge has 1 GPU, the worker type g6.12xlarge has 4 GPUs; list types with 4 GPUs, "
     "since every worker runs one rank per GPU"),
    ({"spot_instance_types": "g5.12xlarge"},
     "spot_instance_types: used only with Spot workers; add --spot-workers (spot_workers: true) or drop it"),
    ({**SPOT, "spot_instance_types": "g6.12xlarge"},
     "spot_instance_types: g6.12xlarge is listed twice (the worker type counts); list each type once"),
    ({**SPOT, "spot_instance_types": "x9.big"},
     "spot_instance_types: unknown instance type 'x9.big'; list GPU types of the catalogue (docs/gpus.md)"),
    ({**SPOT, "spot_instance_types": "g5.12xlarge;g6e.12xlarge"},
     "spot_instance_types: 'g5.12xlarge;g6e.12xlarge' is not up to 4 instance types joined by commas (for example "
     "g6.12xlarge,g5.12xlarge)"),
    ({"spot_workers": True, "worker_instance_type": "p4d.24xlarge", "spot_instance_types": "p5.48xlarge"},
     "spot_instance_types: p5.48xlarge has 32 EFA cards, the worker type p4d.24xlarge has 4; list types with the "
     "same, or set efa off"),
])
def test_a_bad_list_is_one_line(data: dict[str, object], line: str) -> None:
    assert problems(**data) == [line]


def test_efa_off_lets_types_differ_in_cards_but_not_in_gpus() -> None:
    data = {"spot_workers": True, "worker_instance_type": "p4d.24xlarge", "efa": "off"}
    assert build({**data, "spot_instance_types": "p5.48xlarge"}).spot_types == ("p5.48xlarge",)
    assert problems(**data, spot_instance_types="g6.12xlarge") == [
        "spot_instance_types: g6.12xlarge has 4 GPUs, the worker type p4d.24xlarge has 8 GPUs; list types with "
        "8 GPUs, since every worker runs one rank per GPU"]


def test_the_flag_refuses_before_any_aws_call(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["template", "--spot-workers", "--worker-instance-type", "g6.12xlarge", "--spot-instance-types",
            "g5.xlarge", "-o", str(tmp_path / "t.yaml")]
    assert run_with_boundary(cli, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: spot_instance_types: g5.xlarge has 1 GPU, the worker type g6.12xlarge has 4 GPUs; list "
                   "types with 4 GPUs, since every worker runs one rank per GPU"]
    assert not (tmp_path / "t.yaml").exists()


def test_every_check_of_a_type_sees_the_spot_types() -> None:
    """instance_types feeds the zone choice, the GPU/driver and CUDA checks: the more types too."""
    cfg = build({**SPOT, "workers": 2, "spot_instance_types": "g5.12xlarge"})
    assert cfg.instance_types == ("g6.xlarge", "g6.12xlarge", "g5.12xlarge")
    with pytest.raises(ConfigError) as exc:  # a V100 type on the default image, as for the worker type
        build({**SPOT, "spot_instance_types": "p3.8xlarge", "efa": "off", "key_name": "k",
               "ssh_cidr": "203.0.113.7/32"}, for_stack=True)
    assert [p.split(":")[:2] for p in exc.value.problems] == [["spot_instance_types", " p3.8xlarge"]]
