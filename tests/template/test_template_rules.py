"""The template's Rules mean what config validation means: a tiny evaluator of the Rules
section (Ref, Fn::Equals/Not/And/Or) runs them on the parameters of settings that config
rejects for cross-field reasons, and on every valid variant."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from template_support import VARIANTS, variant_config

from cfn_chainermn.config.model import ClusterConfig, EfsConfig, NetworkConfig
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.config.validation import validate

VPC, SUBNET, RTB = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0", "rtb-0123456789abcdef0"


def evaluate(expr: Any, params: dict[str, str]) -> Any:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, list):
        return [evaluate(e, params) for e in expr]
    ((fn, arg),) = expr.items()
    if fn == "Ref":
        return params[arg]
    values = [evaluate(a, params) for a in arg]
    return {"Fn::Equals": lambda: values[0] == values[1], "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values), "Fn::Or": lambda: any(values),
            "Fn::Contains": lambda: values[1] in values[0]}[fn]()


def broken_rules(template: dict[str, Any], params: dict[str, str]) -> list[str]:
    out = []
    for name, rule in template["Rules"].items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params):
            continue
        if not all(evaluate(a["Assert"], params) for a in rule["Assertions"]):
            out.append(name)
    return out


BAD: dict[str, tuple[ClusterConfig, str]] = {
    "subnet without vpc": (ClusterConfig(network=NetworkConfig(subnet_id=SUBNET)), "ExistingSubnetNeedsVpc"),
    "new subnet in existing vpc without routes": (
        ClusterConfig(network=NetworkConfig(vpc_id=VPC)), "NewSubnetInExistingVpcNeedsRouteTable"),
    "existing efs without sg": (
        ClusterConfig(efs=EfsConfig(mode="existing", file_system_id="fs-0123456789abcdef0")),
        "ExistingEfsNeedsIdAndSecurityGroup"),
    "existing efs without id": (
        ClusterConfig(efs=EfsConfig(mode="existing", security_group_id="sg-0123456789abcdef0")),
        "ExistingEfsNeedsIdAndSecurityGroup"),
    "maxIO with elastic": (
        ClusterConfig(efs=EfsConfig(performance_mode="maxIO", throughput_mode="elastic")), "MaxIoNeedsBursting"),
    "ssh from anywhere without opt-in": (ClusterConfig(ssh_cidr="0.0.0.0/0"), "SshFromAnywhereNeedsOptIn"),
    "efa on for a master without efa": (ClusterConfig(instance_type="g5.xlarge", efa="on"), "EfaOnNeedsEfaTypes"),
    "efa on for workers without efa": (
        ClusterConfig(instance_type="p4d.24xlarge", worker_instance_type="g6.xlarge", efa="on"), "EfaOnNeedsEfaTypes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_rules_reject_what_config_rejects(case: str, default_dict: dict[str, Any]) -> None:
    cfg, rule = BAD[case]
    assert validate(cfg), "config must reject it too"
    assert broken_rules(default_dict, template_parameters(cfg)) == [rule]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rules_accept_every_valid_variant(name: str, default_dict: dict[str, Any]) -> None:
    assert broken_rules(default_dict, template_parameters(variant_config(name))) == []


def test_existing_subnet_with_route_table_is_fine(default_dict: dict[str, Any]) -> None:
    cfg = dataclasses.replace(ClusterConfig(), network=NetworkConfig(vpc_id=VPC, subnet_id=SUBNET, route_table_id=RTB))
    assert validate(cfg) == [] and broken_rules(default_dict, template_parameters(cfg)) == []


def test_ssh_from_anywhere_passes_the_rules_only_with_the_opt_in(default_dict: dict[str, Any]) -> None:
    cfg = ClusterConfig(ssh_cidr="0.0.0.0/0", allow_ssh_from_anywhere=True)
    assert validate(cfg) == [] and broken_rules(default_dict, template_parameters(cfg)) == []
    params = template_parameters(cfg)
    assert params["AllowSshFromAnywhere"] == "true"
    assert broken_rules(default_dict, {**params, "AllowSshFromAnywhere": "false"}) == ["SshFromAnywhereNeedsOptIn"]


@pytest.mark.parametrize(("master", "worker", "workers", "refused"), [
    ("p3.16xlarge", "", 1, True),
    ("g6.xlarge", "p3dn.24xlarge", 2, True),
    ("g6.xlarge", "p3dn.24xlarge", 0, False),  # no workers: their type never runs
    ("p4d.24xlarge", "g5.xlarge", 1, False),
])
def test_v100_on_the_default_image_is_refused_by_both(master: str, worker: str, workers: int, refused: bool,
                                                      default_dict: dict[str, Any]) -> None:
    """The default image cannot drive V100 (catalog/gpus.py): `stack create` and the console agree,
    and an image of one's own (ImageId, or another SSM parameter) lifts the refusal in both."""
    cfg = ClusterConfig(name="demo", key_name="k", ssh_cidr="203.0.113.7/32", instance_type=master,
                        worker_instance_type=worker, workers=workers)
    assert bool(validate(cfg, for_stack=True)) is refused
    assert broken_rules(default_dict, template_parameters(cfg)) == (["ClosedDriverGpusNeedAnImage"] if refused else [])
    for own in (dataclasses.replace(cfg, ami="ami-0123456789abcdef0"),
                dataclasses.replace(cfg, ami_ssm_parameter="/my/images/volta")):
        assert validate(own, for_stack=True) == [] and broken_rules(default_dict, template_parameters(own)) == []
