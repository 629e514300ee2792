"""The cluster's network: a new or existing VPC and subnet, and its security groups.

One subnet in one AZ on purpose: a cluster placement group cannot span AZs. A new subnet
gives public addresses (MapPublicIpOnLaunch) so nodes reach S3, PyPI and the CloudFormation
API without a NAT gateway; inbound traffic is still closed by the security groups below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import GetAZs, If, Ref, Select, Sub, Tags, Template, ec2

from cfn_chainermn.names import CLUSTER_TAG


def cluster_tags(name: str) -> Tags:
    """The cluster tag plus a Name that shows in the console."""
    return Tags({CLUSTER_TAG: Ref("AWS::StackName"), "Name": Sub(f"${{AWS::StackName}}-{name}")})


@dataclass(frozen=True)
class Network:
    """What the other builders need: the VPC and subnet ids (new or given) and the groups."""

    vpc_id: Any
    subnet_id: Any
    cluster_sg: ec2.SecurityGroup
    master_sg: ec2.SecurityGroup
    ready: list[tuple[str, Any]]  # (name, Ref) pairs the nodes wait for, each under a condition


def _new_vpc(t: Template) -> tuple[ec2.VPC, ec2.Route]:
    vpc = t.add_resource(ec2.VPC(
        "Vpc", Condition="CreateVpc", CidrBlock=Ref("VpcCidr"),
        EnableDnsSupport=True, EnableDnsHostnames=True,  # EFS mounts by its DNS name
        Tags=cluster_tags("vpc"),
    ))
    igw = t.add_resource(ec2.InternetGateway("InternetGateway", Condition="CreateVpc", Tags=cluster_tags("igw")))
    attach = t.add_resource(ec2.VPCGatewayAttachment(
        "GatewayAttachment", Condition="CreateVpc", VpcId=Ref(vpc), InternetGatewayId=Ref(igw)))
    rtb = t.add_resource(ec2.RouteTable("RouteTable", Condition="CreateVpc", VpcId=Ref(vpc),
                                        Tags=cluster_tags("routes")))
    route = t.add_resource(ec2.Route(
        "DefaultRoute", Condition="CreateVpc", DependsOn=attach.title, RouteTableId=Ref(rtb),
        DestinationCidrBlock="0.0.0.0/0", GatewayId=Ref(igw)))
    return vpc, route


def add_network(t: Template) -> Network:
    """VPC, subnet and routes when asked for; security groups always."""
    vpc, route = _new_vpc(t)
    vpc_id = If("CreateVpc", Ref(vpc), Ref("VpcId"))
    subnet = t.add_resource(ec2.Subnet(
        "Subnet", Condition="CreateSubnet", VpcId=vpc_id, CidrBlock=Ref("SubnetCidr"),
        AvailabilityZone=If("HasAvailabilityZone", Ref("AvailabilityZone"), Select(0, GetAZs(""))),
        MapPublicIpOnLaunch=True, Tags=cluster_tags("subnet"),
    ))
    new_assoc = t.add_resource(ec2.SubnetRouteTableAssociation(
        "SubnetRoutes", Condition="NewVpcAndSubnet", SubnetId=Ref(subnet), RouteTableId=Ref("RouteTable")))
    existing_assoc = t.add_resource(ec2.SubnetRouteTableAssociation(
        "ExistingVpcSubnetRoutes", Condition="NewSubnetInExistingVpc", SubnetId=Ref(subnet),
        RouteTableId=Ref("RouteTableId")))
    subnet_id = If("CreateSubnet", Ref(subnet), Ref("SubnetId"))

    cluster_sg = t.add_resource(ec2.SecurityGroup(
        "ClusterSecurityGroup", VpcId=vpc_id, Tags=cluster_tags("members"),
        GroupDescription="cfn-chainermn cluster members: all traffic among them (MPI, NCCL, EFA)",
    ))
    t.add_resource(ec2.SecurityGroupIngress(
        "ClusterSecurityGroupSelfIngress", GroupId=Ref(cluster_sg), SourceSecurityGroupId=Ref(cluster_sg),
        IpProtocol="-1", Description="all protocols among cluster members: MPI over TCP, NCCL and EFA beyond it",
    ))
    master_sg = t.add_resource(ec2.SecurityGroup(
        "MasterSshSecurityGroup", VpcId=vpc_id, Tags=cluster_tags("ssh"),
        GroupDescription="cfn-chainermn master: SSH from SshCidr only",
        SecurityGroupIngress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp=Ref("SshCidr"), Description="SSH from SshCidr")],
    ))
    ready = [
        ("DefaultRoute", If("CreateVpc", Ref(route), "")),
        ("SubnetRoutes", If("NewVpcAndSubnet", Ref(new_assoc), "")),
        ("ExistingVpcSubnetRoutes", If("NewSubnetInExistingVpc", Ref(existing_assoc), "")),
    ]
    return Network(vpc_id, subnet_id, cluster_sg, master_sg, ready)
