"""No physical name comes from the stack name: case or length of NAME can never break a resource
(the 2018 template's `<StackName>-assets` bucket broke on uppercase names)."""

from __future__ import annotations

import json

from template_support import VARIANTS, variant_config

from cfn_chainermn.template import render

# The property that would give each resource type a physical name of our choosing.
NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName", "AWS::IAM::Role": "RoleName", "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::EC2::LaunchTemplate": "LaunchTemplateName", "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
    "AWS::EC2::SecurityGroup": "GroupName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
}


def test_no_resource_gets_a_physical_name() -> None:
    seen_types: set[str] = set()
    for variant in VARIANTS:
        body = json.loads(render(variant_config(variant), "json"))
        for logical, resource in body["Resources"].items():
            seen_types.add(resource["Type"])
            prop = NAME_PROPERTY.get(resource["Type"])
            assert prop is None or prop not in resource.get("Properties", {}), (
                f"{variant}: {logical} sets {prop}; let CloudFormation name it")
    # the check looked at the resources that matter
    assert {"AWS::S3::Bucket", "AWS::IAM::Role", "AWS::EC2::LaunchTemplate",
            "AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::SecurityGroup"} <= seen_types
