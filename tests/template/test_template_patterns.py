"""The console's AllowedPatterns refuse what config validation refuses: CIDRs with octets over 255
or prefixes out of range.

CloudFormation matches a whole value against a Java regex (Pattern.matches); Python's fullmatch
means the same for these patterns (no construct here differs between the two)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cfn_chainermn.config import ClusterConfig, NetworkConfig
from cfn_chainermn.validation import validate


def matches(default_dict: dict[str, Any], name: str, value: str) -> bool:
    param = default_dict["Parameters"][name]
    return bool(re.fullmatch(param["AllowedPattern"], value)) and len(value) <= param.get("MaxLength", len(value))


@pytest.mark.parametrize(("value", "ok"), [
    ("203.0.113.7/32", True), ("0.0.0.0/0", True), ("255.255.255.255/32", True), ("10.0.0.0/8", True),
    ("198.51.100.0/24", True), ("1.2.3.0/30", True),
    ("10.0.0.0/33", False), ("999.0.0.0/16", False), ("256.1.1.0/24", False), ("10.0.0.0/", False),
    ("10.0.0/24", False), ("10.0.0.0/099", False), ("010.0.0.0/8", False), ("10.0.0.0/8 ", False),
    ("", False), ("10.0.0.0", False),
])
def test_ssh_cidr_pattern_takes_real_ipv4_cidrs_only(default_dict: dict[str, Any], value: str, ok: bool) -> None:
    assert matches(default_dict, "SshCidr", value) is ok


@pytest.mark.parametrize("name", ["VpcCidr", "SubnetCidr"])
@pytest.mark.parametrize(("value", "ok"), [
    ("10.0.0.0/16", True), ("172.31.8.0/22", True), ("192.168.0.0/28", True),
    ("10.0.0.0/8", False), ("10.0.0.0/15", False), ("10.0.0.0/29", False), ("10.0.0.0/33", False),
    ("999.0.0.0/16", False), ("10.0.300.0/24", False),
])
def test_network_cidr_patterns_take_16_to_28(default_dict: dict[str, Any], name: str, value: str, ok: bool) -> None:
    assert matches(default_dict, name, value) is ok
    # and config validation agrees (a new VPC and subnet are checked; the subnet must lie inside the VPC)
    net = NetworkConfig(vpc_cidr=value, subnet_cidr=value)
    assert (validate(ClusterConfig(network=net)) == []) is ok
