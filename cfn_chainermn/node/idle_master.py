"""Idle shutdown's edges on the master: where the limits come from and what acting does (node/idle.py
decides). On AWS the limits are the stack's own parameters (DescribeStacks on its name, the one
read the master role has for it), so `stack update --idle-minutes` takes effect at the next
refresh; a local cluster reads them from <state dir>/idle-limits.json and only records what it
would do.

Deleting is idle_delete.py's sequence (workers to 0, a second look, DeleteStack as the
ShutdownRole, the bucket emptied until the stack is gone), resumable at the next refresh when it
does not finish. Stopping: the worker group to 0 (min and desired) and the master stopped; EFS, the
bucket and the stack stay.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfn_chainermn.aws import aws_call
from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.names import OUT_MASTER_INSTANCE_ID, OUT_SHUTDOWN_ROLE, OUT_WORKER_GROUP
from cfn_chainermn.node import idle, idle_probe, idle_tick
from cfn_chainermn.node.idle_delete import Deletion
from cfn_chainermn.node.system import System, write_atomic

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client

    from cfn_chainermn.node.context import Context
    from cfn_chainermn.node.settings import Settings

PROC = Path("/proc")  # where the probes look for launchers and sessions (tests point it elsewhere)
LOCAL_LIMITS = "idle-limits.json"
LOCAL_ACTION = "idle-action.json"
LOCAL_WALL = "idle-wall.log"
HALT_TIMEOUT_S = 60.0  # the bound on a `systemctl poweroff` that never answers (a refresh must end)
AWS_IDLE_STATE = "/var/lib/cfn-chainermn/idle.json"  # root's, beside state.json


def now() -> float:
    """The clock the master counts with (a test compresses time by replacing it)."""
    return time.time()


@dataclass
class AwsShutdown:
    """The stack as the master sees it: limits from DescribeStacks; deletion through the service role."""

    cfn: CloudFormationClient
    s3: S3Client
    ec2: EC2Client
    autoscaling: AutoScalingClient | None
    stack: str
    bucket: str
    system: System
    stack_id: str = ""
    status: str = ""  # the stack's, as limits() read it: a deletion resumes from it
    action: str = ""  # IdleAction, as limits() read it
    outputs: dict[str, str] | None = None
    sleep: Callable[[float], None] = time.sleep

    def limits(self) -> idle.Limits:
        (found,) = aws_call("DescribeStacks", lambda: self.cfn.describe_stacks(StackName=self.stack))["Stacks"]
        self.stack_id, self.status = found["StackId"], found.get("StackStatus", "")
        self.outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in found.get("Outputs", [])}
        params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters", [])}
        limits = idle.Limits.from_parameters(params, found["CreationTime"].timestamp())
        self.action = limits.action
        return limits

    def underway(self) -> bool:
        """A deletion CloudFormation runs (this master's, resumed after a watch that ran out, or one sent
        from elsewhere while the limit says delete): its bucket is emptied and its end awaited, busy or not."""
        return self.status == "DELETE_IN_PROGRESS" and self.action == "delete"

    def act(self, limits: idle.Limits, acting: idle_tick.Acting) -> str:
        return self._delete(acting) if limits.action == "delete" else self._stop()

    def _output(self, key: str) -> str:
        value = (self.outputs or {}).get(key, "")
        if not value:
            raise AgentError(f"stack {self.stack} has no output {key}: update it with this version's template")
        return value

    def _asg(self) -> AutoScalingClient:
        if self.autoscaling is None:
            raise AgentError("no Auto Scaling client to scale the workers with")
        return self.autoscaling

    def call_off(self, progress: dict[str, Any]) -> str:
        """A deletion that scaled the workers to 0 and then failed before DeleteStack, on a cluster busy
        again: the group back at its recorded sizes (a stack being deleted is left to its deletion)."""
        if not progress.get("scaled") or self.status.startswith("DELETE"):
            return ""
        return self._deletion().restore(progress)

    def _deletion(self) -> Deletion:
        return Deletion(self.cfn, self.s3, self._asg(), self.system, self.stack, self.stack_id, self.bucket,
                        self._output(OUT_SHUTDOWN_ROLE), self._output(OUT_WORKER_GROUP), self.sleep, lambda: now(),
                        (self.outputs or {}).get(OUT_MASTER_INSTANCE_ID, ""))

    def halt(self) -> str:
        """The master powered off from its own OS: an EBS-backed instance then stops, as the template
        leaves InstanceInitiatedShutdownBehavior at its default ("By default, when you initiate a
        shutdown from an Amazon EBS backed instance (using a command such as shutdown or poweroff),
        the instance stops", EC2 User Guide, "Change instance initiated shutdown behavior"). No IAM
        permission is needed, so it works after CloudFormation deleted the master's idle policies.
        Bounded (HALT_TIMEOUT_S): a systemctl that hangs, is missing or is refused is an AgentError,
        which idle_tick says and backs off from."""
        self.system.run(["systemctl", "poweroff"], timeout=HALT_TIMEOUT_S)
        return "the master is powering off (it stops: EBS-backed, shutdown behavior stop)"

    def _delete(self, acting: idle_tick.Acting) -> str:
        return self._deletion().run(self.status, acting)

    def _stop(self) -> str:
        group, master = self._output(OUT_WORKER_GROUP), self._output(OUT_MASTER_INSTANCE_ID)
        asg = self._asg()
        aws_call("UpdateAutoScalingGroup", lambda: asg.update_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=0, DesiredCapacity=0))
        aws_call("StopInstances", lambda: self.ec2.stop_instances(InstanceIds=[master]))
        return f"worker group {group} set to 0, master {master} stopping (EFS kept)"


@dataclass
class LocalShutdown:
    """A local cluster has no stack: its limits are a file, and acting writes down what would be done."""

    state_dir: Path

    def limits(self) -> idle.Limits:
        path = self.state_dir / LOCAL_LIMITS
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return idle.Limits()
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read {path}: {exc}") from exc
        params: dict[str, str] = {k: str(data[k]) for k in ("IdleMinutes", "MaxHours", "IdleAction") if k in data}
        return idle.Limits.from_parameters(params, float(data.get("created", path.stat().st_mtime)))

    def call_off(self, progress: dict[str, Any]) -> str:
        return ""  # a local cluster's action only writes a file: nothing to undo

    def underway(self) -> bool:
        return False  # nothing it does outlasts its act

    def halt(self) -> str:
        return self._record("halt", "its tries over")  # never asked: nothing local fails to delete

    def act(self, limits: idle.Limits, acting: idle_tick.Acting) -> str:
        return self._record(limits.action, acting.reason)

    def _record(self, action: str, reason: str) -> str:
        path = self.state_dir / LOCAL_ACTION
        write_atomic(path, json.dumps({"action": action, "reason": reason, "time": now()}) + "\n", 0o644)
        return f"local cluster: {action} recorded in {path}"


@dataclass(frozen=True)
class Back:
    """The master's idle back end, as agent.py picks it: limits and acting, its state file, its wall."""

    shutdown: idle_tick.Shutdown
    state_path: Path
    wall: Callable[[str], None]


def _wall(message: str) -> None:
    """util-linux wall: every terminal (root's message passes `mesg n`)."""
    subprocess.run(["wall", message], capture_output=True, check=False, timeout=30)


def aws(settings: Settings, clients: Any) -> Back | None:
    """The stack's limits, acting through AWS; None without a CloudFormation client."""
    if clients is None or clients.cfn is None:
        return None
    shutdown = AwsShutdown(clients.cfn, clients.s3, clients.ec2, clients.autoscaling, settings.stack,
                           settings.bucket, System(settings.root))
    return Back(shutdown, System(settings.root).path(AWS_IDLE_STATE), _wall)


def local(settings: Settings) -> Back:
    """Limits from <state dir>/idle-limits.json; the wall goes to the master's idle-wall.log."""
    log = settings.node_dir() / LOCAL_WALL

    def wall(message: str) -> None:
        with log.open("a", encoding="utf-8") as f:
            f.write(message + "\n")

    return Back(LocalShutdown(Path(settings.state_dir)), settings.node_dir() / "idle.json", wall)


def tick_master(ctx: Context, back: Back | None) -> str | None:
    """The master's idle look at the end of a refresh; None on a worker. Never raises: a failure is
    logged and the next refresh looks again."""
    s = ctx.settings
    if "master" not in (s.role, ctx.state.role):
        return None
    if back is None:
        return "idle: no CloudFormation client"
    jobs = idle_probe.JobsFolder.of(ctx)  # listed as the cluster user, never as root
    busy = ctx.seen.busy if ctx.seen is not None else {}  # the live workers' markers (node/idle_marker.py)
    hooks = idle_tick.Hooks(probe=lambda: idle_probe.probe(jobs, PROC, nodes=busy), publish=lambda key, body:
                       ctx.bucket.put(key, body), wall=back.wall, log=ctx.log.error, clock=now)
    try:
        line = idle_tick.tick(back.shutdown, hooks, back.state_path)
    except CfnChainermnError as exc:
        ctx.log.error(f"idle: {exc}")
        return f"idle: {exc}"
    if line != "idle shutdown off":
        ctx.log.info(f"idle: {line}")
    return line
