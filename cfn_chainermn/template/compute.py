"""The nodes: a cluster placement group, the master instance and the worker Auto Scaling group.

IMDSv2 only, with hop limit 1: the agent runs on the host, and a hop limit of 2 would hand the
node's role credentials to every container on a bridge network. The master's properties are
inline (not taken from a launch template) so that emulators such as moto see its ImageId.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import GetAtt, If, NoValue, Ref, StackName, Sub, Tags, Template, autoscaling, cloudformation, ec2
from troposphere.policies import (
    AutoScalingCreationPolicy,
    AutoScalingRollingUpdate,
    CreationPolicy,
    ResourceSignal,
    UpdatePolicy,
)

from cfn_chainermn.names import CLUSTER_TAG, MASTER_RESOURCE, ROLE_TAG, WORKER_GROUP_RESOURCE
from cfn_chainermn.template import efa, gpu, spot
from cfn_chainermn.template.iam import Profiles
from cfn_chainermn.template.network import Network
from cfn_chainermn.template.parameters import Inputs
from cfn_chainermn.template.storage import Storage
from cfn_chainermn.template.userdata import user_data

ROOT_DEVICE = "/dev/sda1"  # Ubuntu-based Deep Learning AMIs and the project's own AMI
SIGNAL_TIMEOUT = "PT30M"  # DLAMI boot + agent install + key exchange, with room to spare
IMDS_V2_ONLY = {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}


def _node_tags(role: str) -> dict[str, Any]:
    return {CLUSTER_TAG: StackName, ROLE_TAG: role, "Name": Sub(f"${{AWS::StackName}}-{role}")}


def _prerequisites(t: Template, net: Network, storage: Storage) -> cloudformation.WaitConditionHandle:
    """A handle whose Metadata refers to the conditional routes and mount target (and the key
    bucket's policy), so nodes boot after them without a DependsOn on a resource that may not
    exist (cfn-lint E3005)."""
    return t.add_resource(cloudformation.WaitConditionHandle(
        "NodePrerequisites",
        Metadata={"Comment": "nodes start after the routes, the EFS mount target and the key bucket's policy",
                  **dict(net.ready + storage.ready)}))


@dataclass(frozen=True)
class Nodes:
    """The master and the workers' group, for the outputs to GetAtt and Ref."""

    master: ec2.Instance
    workers: autoscaling.AutoScalingGroup


def add_compute(t: Template, p: Inputs, net: Network, storage: Storage, profiles: Profiles) -> Nodes:
    image_id = If(p.cond.has_image_id, p.ref("ImageId"), p.ref("ImageSsmParameter"))
    placement = t.add_resource(ec2.PlacementGroup("PlacementGroup", Strategy="cluster"))
    efa.add_mapping(t)
    efa.add_rules(t, p)
    gpu.add_rules(t, p)
    master_efa = efa.add_conditions(t, p, "Master", "MasterInstanceType")
    worker_efa = efa.add_conditions(t, p, "Worker", "WorkerInstanceType")
    master_groups = [Ref(net.cluster_sg), Ref(net.master_sg)]
    master_lt = t.add_resource(ec2.LaunchTemplate(
        "MasterEfaLaunchTemplate", Condition=master_efa.on,
        TagSpecifications=[ec2.TagSpecifications(ResourceType="launch-template", Tags=Tags({CLUSTER_TAG: StackName}))],
        LaunchTemplateData=ec2.LaunchTemplateData(
            MetadataOptions=ec2.MetadataOptions(**IMDS_V2_ONLY),  # as the instance's own, which wins
            NetworkInterfaces=efa.cards(master_efa, master_groups, net.subnet_id, p.ref("SubnetId"),
                                        card_groups=[Ref(net.cluster_sg)]))))
    ready = _prerequisites(t, net, storage)
    master = t.add_resource(ec2.Instance(
        MASTER_RESOURCE,
        DependsOn=[ready.title],
        ImageId=image_id, InstanceType=p.ref("MasterInstanceType"), KeyName=p.ref("KeyName"),
        IamInstanceProfile=Ref(profiles.master), SubnetId=efa.unless_efa(master_efa, net.subnet_id),
        SecurityGroupIds=efa.unless_efa(master_efa, master_groups),
        LaunchTemplate=If(master_efa.on, ec2.LaunchTemplateSpecification(
            LaunchTemplateId=Ref(master_lt), Version=GetAtt(master_lt, "LatestVersionNumber")), NoValue),
        PlacementGroupName=Ref(placement), Tenancy=p.ref("Tenancy"), Monitoring=True,
        MetadataOptions=ec2.MetadataOptions(**IMDS_V2_ONLY),
        BlockDeviceMappings=[ec2.BlockDeviceMapping(DeviceName=ROOT_DEVICE, Ebs=ec2.EbsBlockDevice(
            VolumeType="gp3", VolumeSize=p.ref("RootVolumeSize"), Encrypted=True, DeleteOnTermination=True))],
        PropagateTagsToVolumeOnCreation=True, Tags=Tags(_node_tags("master")),
        UserData=user_data("master", p, storage),
        CreationPolicy=CreationPolicy(ResourceSignal=ResourceSignal(Count=1, Timeout=SIGNAL_TIMEOUT)),
    ))
    lt = t.add_resource(ec2.LaunchTemplate(
        "WorkerLaunchTemplate",
        TagSpecifications=[ec2.TagSpecifications(ResourceType="launch-template", Tags=Tags(
            {CLUSTER_TAG: StackName}))],
        LaunchTemplateData=ec2.LaunchTemplateData(
            ImageId=image_id, InstanceType=p.ref("WorkerInstanceType"), KeyName=p.ref("KeyName"),
            IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(profiles.worker, "Arn")),
            SecurityGroupIds=efa.unless_efa(worker_efa, [Ref(net.cluster_sg)]),
            NetworkInterfaces=If(worker_efa.on, efa.cards(worker_efa, [Ref(net.cluster_sg)]), NoValue),
            Placement=ec2.Placement(Tenancy=p.ref("Tenancy")),
            Monitoring=ec2.Monitoring(Enabled=True),
            MetadataOptions=ec2.MetadataOptions(**IMDS_V2_ONLY),
            BlockDeviceMappings=[ec2.LaunchTemplateBlockDeviceMapping(DeviceName=ROOT_DEVICE, Ebs=ec2.EBSBlockDevice(
                VolumeType="gp3", VolumeSize=p.ref("RootVolumeSize"), Encrypted=True, DeleteOnTermination=True))],
            TagSpecifications=[ec2.TagSpecifications(ResourceType="volume", Tags=Tags(_node_tags("worker")))],
            UserData=user_data("worker", p, storage),
        ),
    ))
    group = spot.worker_group(t, p, autoscaling.LaunchTemplateSpecification(
        LaunchTemplateId=Ref(lt), Version=GetAtt(lt, "LatestVersionNumber")))
    workers = t.add_resource(autoscaling.AutoScalingGroup(
        WORKER_GROUP_RESOURCE,
        DependsOn=[ready.title],
        LaunchTemplate=group.launch_template, MixedInstancesPolicy=group.mixed_instances_policy,
        CapacityRebalance=group.capacity_rebalance,
        VPCZoneIdentifier=[net.subnet_id], PlacementGroup=Ref(placement),
        # MaxSize = DesiredCapacity = WorkerCount: `stack scale` is a stack update of WorkerCount.
        MinSize="0", MaxSize=p.ref("WorkerCount"), DesiredCapacity=p.ref("WorkerCount"),
        TerminationPolicies=["NewestInstance"],  # scale-in drops nodes least likely to be in a job
        Tags=[autoscaling.Tag(k, v, True) for k, v in _node_tags("worker").items()],
        CreationPolicy=CreationPolicy(
            ResourceSignal=ResourceSignal(Count=p.ref("WorkerCount"), Timeout=SIGNAL_TIMEOUT),
            AutoScalingCreationPolicy=AutoScalingCreationPolicy(MinSuccessfulInstancesPercent=100)),
        # A size change never replaces workers; a launch template change (AMI, type) replaces them
        # in batches, waiting for each new worker's signal; scaling processes pause meanwhile.
        UpdatePolicy=UpdatePolicy(AutoScalingRollingUpdate=AutoScalingRollingUpdate(
            MinInstancesInService=0, MaxBatchSize=16, WaitOnResourceSignals=True, PauseTime=SIGNAL_TIMEOUT,
            SuspendProcesses=["HealthCheck", "ReplaceUnhealthy", "AZRebalance", "AlarmNotification",
                              "ScheduledActions"])),
    ))
    return Nodes(master, workers)
