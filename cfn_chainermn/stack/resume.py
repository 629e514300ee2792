"""Bringing a cluster back after idle shutdown's `stop` (`stack scale NAME --workers N`).

The stop happens outside CloudFormation (node/idle_master.py): the master sets its worker group's
minimum and desired size to 0 and stops itself, and the stack's parameters stay as they were. So a
`stack scale` to the stack's own WorkerCount has no change set to make (CloudFormation compares the
template and parameters, not the group), and a change set that does change WorkerCount leaves the
master stopped. This module reads what the stack's outputs name (the master instance, the worker
group) and sets them back directly: StartInstances on a stopped master, and the group's sizes to
the template's for N (MinSize 0, MaxSize = DesiredCapacity = WorkerCount, template/compute.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfn_chainermn.aws import aws_call
from cfn_chainermn.errors import StackError
from cfn_chainermn.names import OUT_MASTER_INSTANCE_ID, OUT_WORKER_GROUP

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client


@dataclass(frozen=True)
class Stopped:
    """What differs from the running cluster the stack describes: each empty when it does not."""

    master: str = ""  # the master's id when it is stopped
    group: str = ""  # the worker group's name when its sizes are not the template's
    sizes: tuple[int, int, int] = (0, 0, 0)  # the group's (min, max, desired) now

    def __bool__(self) -> bool:
        return bool(self.master or self.group)

    def describe(self, workers: int) -> str:
        parts = [f"start the master {self.master}"] if self.master else []
        if self.group:
            low, high, desired = self.sizes
            parts.append(f"set worker group {self.group} from min {low} / max {high} / desired {desired} "
                         f"to 0 / {workers} / {workers}")
        return " and ".join(parts)


def find_stopped(ec2: EC2Client, asg: AutoScalingClient, outputs: dict[str, str], workers: int) -> Stopped:
    """Read the master's state and the group's sizes (outputs a stack lacks are not read)."""
    master, group, sizes = outputs.get(OUT_MASTER_INSTANCE_ID, ""), outputs.get(OUT_WORKER_GROUP, ""), (0, 0, 0)
    if master:
        reservations = aws_call("DescribeInstances", lambda: ec2.describe_instances(InstanceIds=[master]))
        state = next((i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]), "")
        if state == "stopping":
            raise StackError(f"the master {master} is stopping (idle shutdown's stop); run this again once it "
                             "is stopped")
        master = master if state == "stopped" else ""
    if group:
        found = aws_call("DescribeAutoScalingGroups", lambda: asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group]))["AutoScalingGroups"]
        if found:
            g = found[0]
            sizes = (int(g["MinSize"]), int(g["MaxSize"]), int(g["DesiredCapacity"]))
        group = group if found and sizes != (0, workers, workers) else ""
    return Stopped(master, group, sizes)


def resume(ec2: EC2Client, asg: AutoScalingClient, stopped: Stopped, workers: int) -> list[str]:
    """Start the master, then size the group as the template does; what was done, one line each."""
    done = []
    if stopped.master:
        aws_call("StartInstances", lambda: ec2.start_instances(InstanceIds=[stopped.master]))
        done.append(f"started the master {stopped.master}")
    if stopped.group:
        aws_call("UpdateAutoScalingGroup", lambda: asg.update_auto_scaling_group(
            AutoScalingGroupName=stopped.group, MinSize=0, MaxSize=workers, DesiredCapacity=workers))
        done.append(f"worker group {stopped.group} set to {workers} (min 0, max {workers}, desired {workers})")
    return done
