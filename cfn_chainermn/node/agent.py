"""Boot and refresh: run the steps in order, record each outcome, tell CloudFormation the truth.

A failed step stops the boot: the node is not marked ready, its log goes to
logs/<id>/agent.log in the bucket and to stderr (the EC2 console), and the signal is FAILURE
with the step's reason, so the stack fails fast with a message instead of timing out.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from cfn_chainermn.aws import error_of
from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.names import LOGS_PREFIX
from cfn_chainermn.node import idle_marker, idle_master, imds_guard, spot, steps
from cfn_chainermn.node.aws_backend import CfnSignal, S3Bucket
from cfn_chainermn.node.aws_platform import AwsPlatform
from cfn_chainermn.node.context import AgentLog, Context
from cfn_chainermn.node.discovery import AwsInventory, spread_delay
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.local_backend import DirBucket, LocalInventory, NoSignal
from cfn_chainermn.node.local_platform import LocalPlatform
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.state import STEPS, State
from cfn_chainermn.node.system import System

if TYPE_CHECKING:  # the stubs only type the clients; the agent imports boto3 where it makes them
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client

NO_IMDS = "-no-imds"  # the UniqueId suffix of a FAILURE sent without an instance id


@dataclass
class AwsClients:
    """boto3 clients made at the CLI edge (region, endpoint) and handed in."""

    ec2: EC2Client
    s3: S3Client
    cfn: CloudFormationClient | None  # None: refresh, which signals nothing
    autoscaling: AutoScalingClient | None = None  # the master's idle stop (node/idle_master.py)


def _context(settings: Settings, clients: AwsClients | None, echo: TextIO | None, imds: Imds | None = None) -> Context:
    """The one place that picks the back ends: local ones for --backend local, else AWS ones."""
    state = State.load(settings.state_path())
    state.role = settings.role or state.role
    state.node_id = settings.node_id or state.node_id
    log = AgentLog(settings.log_path(), echo)
    if settings.local:
        return Context(settings, LocalPlatform(), DirBucket(f"{settings.state_dir}/bucket"),
                       LocalInventory(settings.state_dir), NoSignal(), log, state)
    if clients is None:
        raise AgentError("AWS back end needs boto3 clients")
    platform = AwsPlatform(System(settings.root), imds or Imds(settings.imds_url, wait=settings.imds_wait))
    return Context(settings, platform, S3Bucket(clients.s3, settings.bucket),
                   AwsInventory(clients.ec2, clients.s3, settings),
                   CfnSignal(clients.cfn, settings), log, state)


def _run_step(ctx: Context, name: str, func: Callable[[], str]) -> str | None:
    """Run one step; None when it succeeded, else the failure reason."""
    try:
        detail = func()
    except CfnChainermnError as exc:
        reason = str(exc)
    except Exception as exc:  # an unexpected bug must still reach the signal and the log
        ctx.log.write("DEBUG", "".join(traceback.format_exception(exc)).rstrip())
        known = error_of(exc)  # a botocore failure no aws_call caught: in the words of every other
        reason = str(known) if known is not None else f"unexpected {type(exc).__name__}: {exc}"
    else:
        ctx.state.mark(name, "ok", detail)
        ctx.log.info(f"{name}: {detail}")
        return None
    ctx.state.mark(name, "failed", reason)
    ctx.log.error(f"{name} failed: {reason}")
    return f"{name} step failed: {reason}"


def _upload_log(ctx: Context, stand_in: str = "") -> None:
    node_id = ctx.settings.node_id or stand_in
    if not node_id:
        return
    key = f"{LOGS_PREFIX}{node_id}/agent.log"
    try:
        ctx.bucket.put(key, ctx.log.path.read_bytes())
    except CfnChainermnError as exc:
        ctx.log.error(f"could not upload the log to {key}: {exc}")


def boot(settings: Settings, clients: AwsClients | None = None, *, imds: Imds | None = None,
         echo: TextIO | None = None) -> State:
    """Bring this node into the cluster. Raises AgentError (after signalling) when a step fails."""
    settings.check(boot=True)
    ctx = _context(settings, clients, echo, imds)
    ctx.state.ready = False
    for name in STEPS:
        ctx.state.steps[name] = {"status": "pending", "detail": "", "time": ""}
    ctx.state.save()
    ctx.log.info(f"boot: {settings.role} node of {settings.stack or settings.state_dir} ({settings.backend})")
    failure = None
    for name, func in steps.plan(ctx):
        failure = _run_step(ctx, name, func)
        if name == "identity" and failure is None:
            settings.save()  # the refresh timer reads it, with the identity just learned
        if failure:
            break
    if failure is None:
        settings.save()
    stand_in = "" if settings.node_id else ctx.platform.stand_in_id()
    signal_failure = _signal(ctx, failure, stand_in)
    _upload_log(ctx, stand_in)
    if failure or signal_failure:
        raise AgentError(failure or str(signal_failure))
    return ctx.state


def _signal(ctx: Context, failure: str | None, stand_in: str = "") -> str | None:
    """Send the outcome; the reason it could not be sent, else None.

    Without an instance id (identity failed: IMDS never answered) the FAILURE still goes out,
    under an id the node knows without IMDS and a suffix that names the cause, because a
    signal's UniqueId is the one text of ours that reaches the stack events ("Received FAILURE
    signal with UniqueId i-0abc...-no-imds"). Sending it needs the instance role's credentials,
    which boto3 also fetches from IMDS: when that fails too, the log and console say so."""
    why = f" ({failure})" if failure else ""
    if ctx.settings.node_id:
        return _run_step(ctx, "signal", lambda: ctx.signaller.signal(failure is None) + why)
    if not stand_in:  # only on AWS, where identity failed: --backend local requires --node-id
        reason = "instance id unknown: cannot signal CloudFormation"
        ctx.state.mark("signal", "failed", reason)
        ctx.log.error(reason)
        return reason
    unique_id = f"{stand_in[:64 - len(NO_IMDS)]}{NO_IMDS}"
    return _run_step(ctx, "signal", lambda: ctx.signaller.signal(False, unique_id) + why)


def _keep_guard(ctx: Context) -> str | None:
    """Rules lost since boot (flushed by hand) come back within 30 s; the failure reason, else None.
    Quiet when nothing changed, so a healthy node's log does not grow every 30 s."""
    try:
        detail = ctx.platform.guard_imds()
    except CfnChainermnError as exc:
        ctx.state.mark("imds", "failed", str(exc))
        ctx.log.error(f"refresh: imds: {exc}")
        return f"imds: {exc}"
    ctx.state.mark("imds", "ok", detail)
    if imds_guard.ADDED in detail:
        ctx.log.info(f"refresh: {detail}")
    return None


def refresh(settings: Settings, clients: AwsClients | None = None, *, echo: TextIO | None = None,
            jitter: float = 0.0, sleep: Callable[[float], None] | None = None) -> State:
    """Rewrite the hostfile and known_hosts; on an API error keep the last good files.

    With `jitter` (the timer's), first wait this node's stable share of it (discovery.spread_delay),
    so nodes whose timers fire together do not call AWS together."""
    settings.check(boot=False)
    if jitter > 0:
        (sleep or time.sleep)(spread_delay(settings.node_id, jitter))
    ctx = _context(settings, clients, echo)
    if ctx.owner[0] < 0:
        try:  # the home's owner, never a link's target's (HomeFiles refuses a linked home anyway)
            st = ctx.home().lstat()
            ctx.owner = (st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass
    guard = _keep_guard(ctx)
    # idle shutdown (node/idle.py): a worker publishes what keeps it busy first, whatever its
    # discovery does next (its own look and its own call: a worker whose view cannot be read
    # still tells the master it is busy); the master counts the cluster after its discovery,
    # which reads the markers. Each logs its own failures.
    marker = idle_marker.tick_worker(ctx)
    try:
        detail = steps.cluster_files(ctx)
    except CfnChainermnError as exc:
        ctx.state.mark("hostfile", "failed", f"{exc}; kept the last good hostfile")
        ctx.log.error(f"refresh failed: {exc}; kept the last good hostfile")
        raise AgentError("; ".join([f"refresh failed: {exc}; kept the last good hostfile",
                                    *(f for f in (guard, marker) if f)])) from exc
    ctx.state.mark("hostfile", "ok", detail)
    idle_master.tick_master(ctx, idle_master.local(settings) if settings.local else idle_master.aws(settings, clients))
    failures = [f for f in (guard, marker) if f]
    if failures:  # the hostfile stays current, but the timer's unit shows the failure
        raise AgentError(f"refresh: {'; '.join(failures)}")
    return ctx.state


def spot_watch(settings: Settings, clients: AwsClients | None, poll: Callable[[], str], *, interval: float,
               ticks: int | None = None, echo: TextIO | None = None) -> None:
    """Watch the Spot interruption notice with this node's back ends (node/spot.py)."""
    settings.check(boot=False)
    spot.watch(_context(settings, clients, echo), poll, interval=interval, ticks=ticks)
