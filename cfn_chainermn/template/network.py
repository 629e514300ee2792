"""The cluster's network: a new or existing VPC and subnet, and its security groups.

One subnet in one AZ on purpose: a cluster placement group cannot span AZs. A new subnet
gives public addresses (MapPublicIpOnLaunch) so nodes reach S3, PyPI and the CloudFormation
API without a NAT gateway; inbound traffic is still closed by the security groups below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import GetAZs, If, Ref, Select, StackName, Sub, Tags, Template, ec2

from cfn_chainermn.names import CLUSTER_TAG
from cfn_chainermn.template.parameters import Inputs


def cluster_tags(name: str) -> Tags:
    """The cluster tag plus a Name that shows in the console."""
    return Tags({CLUSTER_TAG: StackName, "Name": Sub(f"${{AWS::StackName}}-{name}")})


@dataclass(frozen=True)
class Network:
    """What the other builders need: the VPC and subnet ids (new or given) and the groups."""

    vpc_id: Any
    subnet_id: Any
    cluster_sg: ec2.SecurityGroup
    master_sg: ec2.SecurityGroup
    ready: list[tuple[str, Any]]  # (name, Ref) pairs the nodes wait for, each under a condition


def _new_vpc(t: Template, p: Inputs) -> tuple[ec2.VPC, ec2.RouteTable, ec2.Route]:
    new = p.cond.create_vpc
    vpc = t.add_resource(ec2.VPC(
        "Vpc", Condition=new, CidrBlock=p.ref("VpcCidr"),
        EnableDnsSupport=True, EnableDnsHostnames=True,  # EFS mounts by its DNS name
        Tags=cluster_tags("vpc"),
    ))
    igw = t.add_resource(ec2.InternetGateway("InternetGateway", Condition=new, Tags=cluster_tags("igw")))
    attach = t.add_resource(ec2.VPCGatewayAttachment(
        "GatewayAttachment", Condition=new, VpcId=Ref(vpc), InternetGatewayId=Ref(igw)))
    rtb = t.add_resource(ec2.RouteTable("RouteTable", Condition=new, VpcId=Ref(vpc), Tags=cluster_tags("routes")))
    route = t.add_resource(ec2.Route(
        "DefaultRoute", Condition=new, DependsOn=attach.title, RouteTableId=Ref(rtb),
        DestinationCidrBlock="0.0.0.0/0", GatewayId=Ref(igw)))
    return vpc, rtb, route


def add_network(t: Template, p: Inputs) -> Network:
    """VPC, subnet and routes when asked for; security groups always."""
    c = p.cond
    vpc, rtb, route = _new_vpc(t, p)
    vpc_id = If(c.create_vpc, Ref(vpc), p.ref("VpcId"))
    subnet = t.add_resource(ec2.Subnet(
        "Subnet", Condition=c.create_subnet, VpcId=vpc_id, CidrBlock=p.ref("SubnetCidr"),
        AvailabilityZone=If(c.has_availability_zone, p.ref("AvailabilityZone"), Select(0, GetAZs(""))),
        MapPublicIpOnLaunch=True, Tags=cluster_tags("subnet"),
    ))
    new_assoc = t.add_resource(ec2.SubnetRouteTableAssociation(
        "SubnetRoutes", Condition=c.new_vpc_and_subnet, SubnetId=Ref(subnet), RouteTableId=Ref(rtb)))
    existing_assoc = t.add_resource(ec2.SubnetRouteTableAssociation(
        "ExistingVpcSubnetRoutes", Condition=c.new_subnet_in_existing_vpc, SubnetId=Ref(subnet),
        RouteTableId=p.ref("RouteTableId")))
    subnet_id = If(c.create_subnet, Ref(subnet), p.ref("SubnetId"))

    cluster_sg = t.add_resource(ec2.SecurityGroup(
        "ClusterSecurityGroup", VpcId=vpc_id, Tags=cluster_tags("members"),
        GroupDescription="cfn-chainermn cluster members: all traffic among them (MPI, NCCL, EFA)",
    ))
    t.add_resource(ec2.SecurityGroupIngress(
        "ClusterSecurityGroupSelfIngress", GroupId=Ref(cluster_sg), SourceSecurityGroupId=Ref(cluster_sg),
        IpProtocol="-1", Description="all protocols among cluster members: MPI over TCP, NCCL and EFA beyond it",
    ))
    # EFA needs the egress rule to the group itself too: the default 0.0.0.0/0 egress does not
    # carry EFA traffic (EC2 user guide, "Prepare an EFA-enabled security group").
    t.add_resource(ec2.SecurityGroupEgress(
        "ClusterSecurityGroupSelfEgress", GroupId=Ref(cluster_sg), DestinationSecurityGroupId=Ref(cluster_sg),
        IpProtocol="-1", Description="all protocols to cluster members: EFA's own traffic needs this rule",
    ))
    master_sg = t.add_resource(ec2.SecurityGroup(
        "MasterSshSecurityGroup", VpcId=vpc_id, Tags=cluster_tags("ssh"),
        GroupDescription="cfn-chainermn master: SSH from SshCidr only",
        SecurityGroupIngress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp=p.ref("SshCidr"), Description="SSH from SshCidr")],
    ))
    ready = [
        (route.title, If(c.create_vpc, Ref(route), "")),
        (new_assoc.title, If(c.new_vpc_and_subnet, Ref(new_assoc), "")),
        (existing_assoc.title, If(c.new_subnet_in_existing_vpc, Ref(existing_assoc), "")),
    ]
    return Network(vpc_id, subnet_id, cluster_sg, master_sg, ready)
