"""Parameters, conditions, rules and console metadata of the cluster template.

Every choice the cluster offers is a parameter, so one template serves the console and the
CLI; `--config` only changes the Defaults. Each parameter, its label, group and constraint come
from the settings table (config/settings.py), the same one config validation checks against, so
the console rejects what the CLI would reject. Rules carry the constraints between parameters
that a single parameter cannot express. The builders get `Inputs` and Ref parameters and test
conditions through it, so a misspelt name fails when the template is built, not in CloudFormation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from troposphere import And, Condition, Equals, Not, Parameter, Ref, Template

from cfn_chainermn.config.params import console_parameters, template_parameters
from cfn_chainermn.config.setting import GROUPS, Entry, Param
from cfn_chainermn.config.settings import ClusterConfig


@dataclass(frozen=True)
class Conditions:
    """The template's condition names, each one added by add_conditions."""

    has_image_id: str
    create_vpc: str
    create_subnet: str
    has_availability_zone: str
    new_vpc_and_subnet: str
    new_subnet_in_existing_vpc: str
    create_efs: str
    has_efs: str
    existing_efs_ingress: str
    spot_workers_on: str


@dataclass(frozen=True)
class Inputs:
    """What the builders take from the parameter section: parameters to Ref, conditions to test."""

    params: Mapping[str, Parameter]
    cond: Conditions

    def ref(self, name: str) -> Ref:
        """Ref of a parameter; KeyError for a name the template does not have."""
        return _ref(self.params, name)


def _ref(params: Mapping[str, Parameter], name: str) -> Ref:
    return Ref(params[name])


def _properties(param: Param, entry: Entry | None) -> dict[str, Any]:
    """The parameter's properties in the released order: type, description, constraint."""
    s, kind = (entry.setting, entry.kind) if entry else (None, "str")
    props: dict[str, Any] = {"Type": param.type or ("Number" if kind == "int" else "String"),
                             "Description": param.description}
    if kind == "bool":
        props["AllowedValues"] = ["false", "true"]
    elif s is not None and s.choices:
        props["AllowedValues"] = list(s.choices)
    pattern = param.pattern
    if not pattern and s is not None and s.pattern and props["Type"] == "String":
        pattern = f"^({s.pattern})?$" if s.optional else f"^{s.pattern}$"
    if pattern:
        props["AllowedPattern"] = pattern
    if param.max_length is not None:
        props["MaxLength"] = param.max_length
    if param.constraint:
        props["ConstraintDescription"] = param.constraint
    if kind == "int" and s is not None and s.range is not None:
        props["MinValue"], props["MaxValue"] = s.range
    return props


def add_parameters(t: Template, cfg: ClusterConfig) -> dict[str, Parameter]:
    """Add every parameter with `cfg`'s values as Defaults, plus the console's Interface."""
    values, order = template_parameters(cfg), console_parameters()
    params: dict[str, Parameter] = {}
    for param, entry in order:
        props = _properties(param, entry)
        if values[param.name] or not param.ask:  # the console asks for one left without a Default
            props["Default"] = values[param.name]
        params[param.name] = t.add_parameter(Parameter(param.name, **props))
    t.set_metadata({"AWS::CloudFormation::Interface": {
        "ParameterGroups": [{"Label": {"default": g.label},
                             "Parameters": [p.name for p, _ in order if p.group == g]} for g in GROUPS],
        "ParameterLabels": {p.name: {"default": p.label} for p, _ in order},
    }})
    return params


def add_conditions(t: Template, params: Mapping[str, Parameter]) -> Inputs:
    """Conditions keyed on the parameter they test, so cfn-lint knows a Ref is non-empty in the
    branch that uses it (else it warns that "" does not match vpc-...)."""
    def ref(name: str) -> Ref:
        return _ref(params, name)

    def empty(name: str) -> Equals:
        return Equals(ref(name), "")

    add = t.add_condition
    create_vpc = add("CreateVpc", empty("VpcId"))
    create_subnet = add("CreateSubnet", empty("SubnetId"))
    return Inputs(params, Conditions(
        has_image_id=add("HasImageId", Not(empty("ImageId"))),
        create_vpc=create_vpc,
        create_subnet=create_subnet,
        has_availability_zone=add("HasAvailabilityZone", Not(empty("AvailabilityZone"))),
        new_vpc_and_subnet=add("NewVpcAndSubnet", And(Condition(create_vpc), Condition(create_subnet))),
        new_subnet_in_existing_vpc=add("NewSubnetInExistingVpc", And(
            Condition(create_subnet), Not(empty("VpcId")), Not(empty("RouteTableId")))),
        create_efs=add("CreateEfs", Equals(ref("EfsMode"), "new")),
        has_efs=add("HasEfs", Not(Equals(ref("EfsMode"), "none"))),
        existing_efs_ingress=add("ExistingEfsIngress", And(
            Equals(ref("EfsMode"), "existing"), Not(empty("EfsSecurityGroupId")))),
        spot_workers_on=add("SpotWorkersOn", Equals(ref("SpotWorkers"), "true")),
    ))


def _rule(condition: Any, assertion: Any, message: str) -> dict[str, Any]:
    return {"RuleCondition": condition, "Assertions": [{"Assert": assertion, "AssertDescription": message}]}


def add_rules(t: Template, p: Inputs) -> None:
    """Constraints between parameters, checked by CloudFormation before anything is created."""

    def empty(name: str) -> Equals:
        return Equals(p.ref(name), "")

    # Rules compare only for equality, so this catches 0.0.0.0/0 itself; other wide ranges need
    # the CLI (config validation refuses any prefix under /8 without allow_ssh_from_anywhere).
    t.add_rule("SshFromAnywhereNeedsOptIn", _rule(
        Equals(p.ref("SshCidr"), "0.0.0.0/0"), Equals(p.ref("AllowSshFromAnywhere"), "true"),
        "SshCidr 0.0.0.0/0 opens SSH to the whole internet: give your own address range (e.g. 203.0.113.7/32), "
        "or set AllowSshFromAnywhere to true if you really mean everyone."))
    t.add_rule("ExistingSubnetNeedsVpc", _rule(
        Not(empty("SubnetId")), Not(empty("VpcId")),
        "An existing subnet needs VpcId: give the id of the subnet's VPC."))
    t.add_rule("NewSubnetInExistingVpcNeedsRouteTable", _rule(
        And(empty("SubnetId"), Not(empty("VpcId"))), Not(empty("RouteTableId")),
        "A new subnet in an existing VPC needs RouteTableId: a route table with a route to an internet gateway."))
    t.add_rule("ExistingEfsNeedsIdAndSecurityGroup", _rule(
        Equals(p.ref("EfsMode"), "existing"), And(Not(empty("EfsFileSystemId")), Not(empty("EfsSecurityGroupId"))),
        "EfsMode existing needs EfsFileSystemId and EfsSecurityGroupId (the security group of its mount targets)."))
    t.add_rule("MaxIoNeedsBursting", _rule(
        And(Equals(p.ref("EfsMode"), "new"), Equals(p.ref("EfsPerformanceMode"), "maxIO")),
        Equals(p.ref("EfsThroughputMode"), "bursting"),
        "EFS maxIO performance mode works only with bursting throughput: set EfsThroughputMode to bursting."))
