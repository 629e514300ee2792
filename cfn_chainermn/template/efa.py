"""EFA interfaces for the nodes, chosen in the template by instance type.

The type is a parameter, so the number of EFA-capable network cards comes from a Mapping built
from the catalogue (0 for a type without EFA) and conditions per count class. Layout, after the
EC2 user guide ("Maximize network bandwidth on Amazon EC2 instances with multiple network
cards", and its P5 example) and ParallelCluster's launch templates: card 0 device 0 is an `efa`
interface (EFA with ENA) and the node's primary, carrying its subnet, security groups and so
its address; every further card gets an `efa` interface at device index 1.

AWS gives no public IPv4 address to an instance launched with more than one network interface
(ParallelCluster's MultiNetworkInterfacesInstancesValidator; Karpenter's docs: the launch fails
when it is asked for one explicitly), and the cluster's own subnet reaches the internet through
public addresses only. So the cards beyond 0 are attached only in an existing subnet (the user's
routing, e.g. a NAT gateway), and no AssociatePublicIpAddress is ever set: the subnet's
MapPublicIpOnLaunch decides, as it does without EFA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import And, Condition, Equals, FindInMap, If, Not, NoValue, Or, Ref, Template, ec2

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.template.parameters import Inputs

MAPPING = "InstanceTypeEfa"
CARD_COUNTS = sorted({t.network_cards for t in INSTANCE_TYPES.values() if t.network_cards})
MAX_CARDS = max(CARD_COUNTS)


def add_mapping(t: Template) -> None:
    """Instance type -> number of EFA-capable network cards ("0": none)."""
    t.add_mapping(MAPPING, {name: {"Cards": str(row.network_cards)} for name, row in INSTANCE_TYPES.items()})


@dataclass(frozen=True)
class Efa:
    """Conditions for one role's instance type: EFA at all, and a card beyond 0 for each count class."""

    role: str
    on: str
    at_least: dict[int, str]  # count class -> "this type has at least that many cards, all attached"

    def card_condition(self, index: int) -> str:
        """The condition under which network card `index` (>= 1) gets an interface."""
        return self.at_least[min(c for c in CARD_COUNTS if c > index)]


ROLES = ("Master", "Worker")


def condition_names() -> list[str]:
    """Every condition add_conditions adds, for both roles."""
    return [f"{role}{suffix}" for role in ROLES
            for suffix in ("Efa", "EfaAllCards", *(f"Efa{c}" for c in CARD_COUNTS[1:]))]


def add_conditions(t: Template, p: Inputs, role: str, type_param: str) -> Efa:
    """`{role}Efa` (EFA enabled and the type has it), `{role}EfaAllCards` (and an existing subnet), and
    `{role}Efa{n}` per count class n > 1 (all cards, and the type has at least n)."""
    cards = FindInMap(MAPPING, p.ref(type_param), "Cards")
    on = t.add_condition(f"{role}Efa", And(Not(Equals(p.ref("Efa"), "off")), Not(Equals(cards, "0"))))
    all_cards = t.add_condition(f"{role}EfaAllCards", And(Condition(on), Not(Condition(p.cond.create_subnet))))
    at_least: dict[int, str] = {}
    for count in CARD_COUNTS[1:]:
        tests = [Equals(cards, str(n)) for n in CARD_COUNTS if n >= count]
        has = tests[0] if len(tests) == 1 else Or(*tests)
        at_least[count] = t.add_condition(f"{role}Efa{count}", And(Condition(all_cards), has))
    return Efa(role, on, at_least)


def cards(efa: Efa, groups: list[Any], subnet_id: Any | None = None, existing_subnet: Any | None = None,
          card_groups: list[Any] | None = None) -> list[Any]:
    """Launch-template NetworkInterfaces: card 0, then each further card under its condition.
    Only launch templates take InterfaceType and NetworkCardIndex (AWS::EC2::Instance's
    NetworkInterface has neither), so the master takes its interfaces from one too. Cards beyond 0
    exist only in an existing subnet, so they name `existing_subnet` (the SubnetId parameter), and
    carry `card_groups` (default: `groups`): EFA traffic needs only the cluster group, SSH the primary."""

    def card(index: int) -> ec2.NetworkInterfaces:
        subnet = subnet_id if index == 0 else existing_subnet
        where = {"SubnetId": subnet} if subnet is not None else {}
        return ec2.NetworkInterfaces(NetworkCardIndex=index, DeviceIndex=0 if index == 0 else 1, InterfaceType="efa",
                                     Groups=groups if index == 0 or card_groups is None else card_groups, **where)

    return [card(0)] + [If(efa.card_condition(i), card(i), NoValue) for i in range(1, MAX_CARDS)]


def unless_efa(efa: Efa, value: Any) -> Any:
    """A top-level property (SubnetId, SecurityGroupIds) that EFA's card 0 carries instead."""
    return If(efa.on, NoValue, value)


def add_rules(t: Template, p: Inputs) -> None:
    """`Efa: on` with a type that has no EFA is refused before anything is created."""
    with_efa = sorted(name for name, row in INSTANCE_TYPES.items() if row.efa)
    worker_runs = Not(Equals(p.ref("WorkerCount"), "0"))
    t.add_rule("EfaOnNeedsEfaTypes", {
        "RuleCondition": Equals(p.ref("Efa"), "on"),
        "Assertions": [
            {"Assert": {"Fn::Contains": [with_efa, Ref("MasterInstanceType")]},
             "AssertDescription": "Efa on: MasterInstanceType has no EFA; set Efa to auto or off, or choose a type "
                                  "with EFA."},
            {"Assert": Or(Not(worker_runs), {"Fn::Contains": [with_efa, Ref("WorkerInstanceType")]}),
             "AssertDescription": "Efa on: WorkerInstanceType has no EFA; set Efa to auto or off, or choose a type "
                                  "with EFA."},
        ]})
