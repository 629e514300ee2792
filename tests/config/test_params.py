"""Template parameters <-> config: `stack update` reads a stack's settings back through this."""

from __future__ import annotations

import re

import pytest

from cfn_chainermn.config.model import build, load
from cfn_chainermn.config.params import config_overrides, template_parameters
from cfn_chainermn.errors import ConfigError

CASES = [
    {},
    {"name": "demo", "key_name": "k", "ssh_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True, "workers": 0,
     "spot_workers": True, "instance_type": "p4d.24xlarge", "worker_instance_type": "p3.2xlarge"},
    {"network": {"vpc_id": "vpc-0123456789abcdef0", "subnet_id": "subnet-0123456789abcdef0"},
     "efs": {"mode": "existing", "file_system_id": "fs-0123456789abcdef0",
             "security_group_id": "sg-0123456789abcdef0", "mount_point": "/data"},
     "ami": "ami-0123456789abcdef0", "root_volume_size": 500, "tenancy": "dedicated"},
]


@pytest.mark.parametrize("data", CASES)
def test_parameters_round_trip(data: dict[str, object]) -> None:
    cfg = build(data)
    back = load(None, {"name": cfg.name}, base=config_overrides(template_parameters(cfg)))
    assert template_parameters(back) == template_parameters(cfg)


def test_flags_win_over_the_stack() -> None:
    current = template_parameters(build({"workers": 3, "instance_type": "g5.xlarge"}))
    cfg = load(None, {"workers": 7}, base=config_overrides(current))
    assert (cfg.workers, cfg.instance_type, cfg.worker_type) == (7, "g5.xlarge", "g5.xlarge")


def test_unknown_parameters_are_ignored() -> None:
    # AgentWheelS3Path: a stack created before the agent travelled inside the template; `stack update`
    # moves it to the current template, which has no such parameter
    assert config_overrides({"AgentWheelS3Path": "b/k", "Extra": "x"}) == {}
    assert "AgentWheelS3Path" not in template_parameters(build({}))


def test_allow_ssh_from_anywhere_is_a_parameter_both_ways() -> None:
    params = template_parameters(build({"ssh_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True}))
    assert params["AllowSshFromAnywhere"] == "true"
    assert config_overrides(params)["allow_ssh_from_anywhere"] == "true"
    assert template_parameters(build({}))["AllowSshFromAnywhere"] == "false"


def test_a_stack_without_the_opt_in_is_not_opened_by_an_update() -> None:
    base = config_overrides({"SshCidr": "0.0.0.0/0", "AllowSshFromAnywhere": "false"})
    with pytest.raises(ConfigError, match=re.escape("ssh_cidr: 0.0.0.0/0 opens SSH to the whole internet")):
        load(None, {}, base=base)


def test_a_stack_from_before_the_parameter_keeps_the_opt_in_it_had_to_give() -> None:
    assert config_overrides({"SshCidr": "0.0.0.0/0"})["allow_ssh_from_anywhere"] is True
    # any range wider than /8 was allowed without an opt-in then: an update must not start refusing it
    assert config_overrides({"SshCidr": "0.0.0.0/1"})["allow_ssh_from_anywhere"] is True
    assert "allow_ssh_from_anywhere" not in config_overrides({"SshCidr": "10.0.0.0/8"})
    assert config_overrides({"SshCidr": "0.0.0.0/1", "AllowSshFromAnywhere": "false"})["allow_ssh_from_anywhere"] \
        == "false"  # a stack that has the parameter keeps what it says
