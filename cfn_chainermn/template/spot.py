"""Spot workers that survive one pool's shortage: the worker group launches through a
MixedInstancesPolicy (every worker Spot, the worker type first, then `SpotInstanceTypes`) and
rebalances capacity, so EC2's rebalance recommendation gets a replacement launched before the
interruption notice (the node side of an interruption is node/spot.py).

Without Spot the group keeps its plain LaunchTemplate, as before. The purchase option lives in
InstancesDistribution, not in the launch template (AWS::AutoScaling::AutoScalingGroup
MixedInstancesPolicy and InstancesDistribution in the CloudFormation reference). The extra types
come from one comma-separated parameter: CloudFormation cannot map over a list, so each of the
MAX_SPOT_TYPES places is an override under a condition of its own, read from the list padded
with empty entries (Select past the end of a list fails the stack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import Equals, If, Not, NoValue, Select, Split, Sub, Template, autoscaling

from cfn_chainermn.config.settings import MAX_SPOT_TYPES
from cfn_chainermn.template.parameters import Inputs

# capacity-optimized-prioritized: the pools least likely to be interrupted, the listed order as a
# tie-break (the worker type first). A training job loses every rank's work on an interruption:
# fewer interruptions are worth more than the last cent ("Allocation strategies for multiple
# instance types", Amazon EC2 Auto Scaling User Guide).
ALLOCATION = "capacity-optimized-prioritized"
CONDITIONS = tuple(f"HasSpotType{i + 1}" for i in range(MAX_SPOT_TYPES))  # one per place in the list


@dataclass(frozen=True)
class SpotGroup:
    """The worker group's properties that differ between Spot and On-Demand."""

    launch_template: Any
    mixed_instances_policy: Any
    capacity_rebalance: Any


def worker_group(t: Template, p: Inputs, spec: autoscaling.LaunchTemplateSpecification) -> SpotGroup:
    spot = p.cond.spot_workers_on
    padded = Split(",", Sub("${SpotInstanceTypes}" + "," * MAX_SPOT_TYPES))
    overrides: list[Any] = [autoscaling.LaunchTemplateOverrides(InstanceType=p.ref("WorkerInstanceType"))]
    for i in range(MAX_SPOT_TYPES):
        has = t.add_condition(CONDITIONS[i], Not(Equals(Select(i, padded), "")))
        overrides.append(If(has, autoscaling.LaunchTemplateOverrides(InstanceType=Select(i, padded)), NoValue))
    policy = autoscaling.MixedInstancesPolicy(
        InstancesDistribution=autoscaling.InstancesDistribution(
            OnDemandBaseCapacity=0, OnDemandPercentageAboveBaseCapacity=0, SpotAllocationStrategy=ALLOCATION),
        LaunchTemplate=autoscaling.LaunchTemplate(LaunchTemplateSpecification=spec, Overrides=overrides))
    return SpotGroup(launch_template=If(spot, NoValue, spec), mixed_instances_policy=If(spot, policy, NoValue),
                     capacity_rebalance=If(spot, True, NoValue))
