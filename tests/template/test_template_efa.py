"""EFA in the template: the interfaces each instance type gets, evaluated from the Mapping and the
conditions the way CloudFormation would, for the cluster's own subnet and an existing one."""

from __future__ import annotations

from typing import Any

import pytest

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.config.model import build
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.template import efa, template_dict

NO_VALUE = {"Ref": "AWS::NoValue"}
SUBNET = {"network": {"vpc_id": "vpc-0123456789abcdef0", "subnet_id": "subnet-0123456789abcdef0"}}


def _value(expr: Any, t: dict[str, Any], params: dict[str, str]) -> Any:
    """A small evaluator of the intrinsics these parts use (Ref, FindInMap, Equals, Not, And, Or,
    Condition, If); NoValue drops a list item, as CloudFormation does."""
    if isinstance(expr, list):
        items = [_value(e, t, params) for e in expr]
        return [i for i in items if i is not NO_VALUE]
    if not isinstance(expr, dict) or len(expr) != 1:
        return {k: _value(v, t, params) for k, v in expr.items()} if isinstance(expr, dict) else expr
    ((fn, arg),) = expr.items()
    if fn == "Ref":
        return NO_VALUE if arg == "AWS::NoValue" else params.get(arg, {"Ref": arg})
    if fn == "Condition":
        return _value(t["Conditions"][arg], t, params)
    if fn == "Fn::If":
        return _value(arg[1] if _value(t["Conditions"][arg[0]], t, params) else arg[2], t, params)
    if fn == "Fn::FindInMap":
        name, key, field = (_value(a, t, params) for a in arg)
        return t["Mappings"][name][key][field]
    values = [_value(a, t, params) for a in arg]
    return {"Fn::Equals": lambda: values[0] == values[1], "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values), "Fn::Or": lambda: any(values)}.get(fn, lambda: {fn: values})()


def _interfaces(overrides: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(master's, workers') NetworkInterfaces as CloudFormation would launch them; [] = none."""
    cfg = build({"workers": 2, **overrides})
    t, params = template_dict(cfg), template_parameters(cfg)
    r = t["Resources"]
    master: list[dict[str, Any]] = []
    if _value(t["Conditions"]["MasterEfa"], t, params):
        master = _value(r["MasterEfaLaunchTemplate"]["Properties"]["LaunchTemplateData"]["NetworkInterfaces"], t,
                        params)
    workers = _value(r["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"].get("NetworkInterfaces", []),
                     t, params)
    return master, ([] if workers is NO_VALUE else workers)


@pytest.mark.parametrize(("itype", "own_subnet", "existing_subnet"), [
    ("g6.xlarge", 0, 0), ("g5.8xlarge", 1, 1), ("p3dn.24xlarge", 1, 1),
    ("p4d.24xlarge", 1, 4), ("g6e.48xlarge", 1, 4), ("p6-b200.48xlarge", 1, 8), ("p5en.48xlarge", 1, 16),
    ("p5.48xlarge", 1, 32),
])
def test_every_network_card_gets_efa_where_a_node_keeps_its_address(itype: str, own_subnet: int,
                                                                    existing_subnet: int) -> None:
    """Card 0 always (it keeps the public address); every card only in an existing subnet."""
    for overrides, count in (({}, own_subnet), (SUBNET, existing_subnet)):
        master, workers = _interfaces({"instance_type": itype, **overrides})
        assert [i["NetworkCardIndex"] for i in master] == list(range(count))
        assert [i["NetworkCardIndex"] for i in workers] == list(range(count))
        for i in master + workers:
            assert (i["InterfaceType"], i["DeviceIndex"]) == ("efa", 0 if i["NetworkCardIndex"] == 0 else 1)


def test_card_zero_is_the_primary_and_further_cards_carry_only_the_cluster_group() -> None:
    master, workers = _interfaces({"instance_type": "p4d.24xlarge", **SUBNET})
    both = [{"Ref": "ClusterSecurityGroup"}, {"Ref": "MasterSshSecurityGroup"}]
    assert master[0]["Groups"] == both and master[0]["SubnetId"] == "subnet-0123456789abcdef0"
    assert all(i["Groups"] == [{"Ref": "ClusterSecurityGroup"}] for i in master[1:] + workers)
    assert all("SubnetId" not in i for i in workers)  # the group's VPCZoneIdentifier places them
    assert all("AssociatePublicIpAddress" not in i for i in master + workers)  # the subnet decides


@pytest.mark.parametrize("setting", ["off", "auto"])
def test_efa_off_and_types_without_efa_keep_the_plain_network(setting: str) -> None:
    itype = "p5.48xlarge" if setting == "off" else "g6.4xlarge"
    assert _interfaces({"instance_type": itype, "efa": setting, **SUBNET}) == ([], [])


def test_mixed_types_each_role_follows_its_own() -> None:
    master, workers = _interfaces({"instance_type": "g6.xlarge", "worker_instance_type": "p4d.24xlarge", **SUBNET})
    assert (len(master), len(workers)) == (0, 4)


def test_the_mapping_is_the_catalogue_and_the_group_may_send_to_itself() -> None:
    t = template_dict(build({}))
    assert t["Mappings"][efa.MAPPING] == {n: {"Cards": str(r.network_cards)} for n, r in INSTANCE_TYPES.items()}
    egress = t["Resources"]["ClusterSecurityGroupSelfEgress"]["Properties"]
    assert egress["IpProtocol"] == "-1"
    assert egress["GroupId"] == egress["DestinationSecurityGroupId"] == {"Ref": "ClusterSecurityGroup"}
