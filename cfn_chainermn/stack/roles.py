"""The IAM roles a stack's deletion runs under: idle shutdown's retained ShutdownRole, removed once
no stack uses it, and the role a user names for DeleteStack (`stack delete --role-arn`).

CloudFormation keeps the ShutdownRole (DeletionPolicy Retain, template/idle.py) whenever the
resource leaves the stack: when the stack is deleted, and when an update drops it (a limit turned
off or set to `stop`): "This capability also applies to stack update operations that lead to
resources being deleted from stacks" (CloudFormation User Guide, DeletionPolicy attribute); a
replacement keeps the old one by UpdateReplacePolicy Retain. Its
ARN is the stack's ShutdownRoleArn output, read before the operation; once the operation is done,
`stack delete` and `stack update` delete it here. After the master's own deletion that output is
gone with the stack: `stack delete NAME` then finds the role by its name (CloudFormation names it
`<stack>-ShutdownRole-<suffix>`) and its tag naming the stack's id, and deletes it only when that
stack is DELETE_COMPLETE (a deleted stack can still be described by its id). `stack delete
--no-wait` cannot wait for that; it says the role stays and that `stack delete STACK_ID` removes it:
by the id (stack/stack_ids.py), the role of that stack alone, whatever stack has its name by then.

How CloudFormation names a role the template leaves unnamed is not documented beyond
`<stack>-<logicalId>-<suffix>` (User Guide, "Name type"); an IAM role name has at most 64
characters (IAM API reference, CreateRole). Generated names seen in public code show the cut: the
stack and logical-id parts share 49 characters (64, two hyphens, a 12-13 character suffix), 25 and
24 when both are long, so a long stack name is cut from the right and a 12-character logical id is
kept whole: `StackSet-StackSetPasswordPolicy-5e1837a-LambdaRole-1TCLUMCY77KXG` (39 + 10),
`StackSet-AWS-Landing-Zone-ForwardSnsNotificationLa-1XDDEMJLM5D3V` (25 + 24),
`CdkStack-CustomS3AutoDeleteObjectsCustomResourcePr-1T2P22ECUHKM7` (8 + 41). So a 128-character
stack's role is `<its first 37 characters>-ShutdownRole-<suffix>`. The search asks for the tags of a
role named so with the stack's name, or a start of it when the whole would not fit in 64 characters
(any start: the 37 is seen, not documented); the tag, which holds the whole stack id, decides.

Why `--role-arn`: DeleteStack without RoleARN "uses the role that was previously associated with
the stack" (DeleteStack's RoleARN, CloudFormation API reference): after the master's idle deletion
passed the ShutdownRole, that is the role every later delete runs as, and a stack it cannot finish
(DELETE_FAILED) or whose role is gone can be deleted only by passing another role.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cfn_chainermn.aws import aws_call
from cfn_chainermn.config.sections import has_idle_limit
from cfn_chainermn.errors import AwsError, ConfigError, StackError
from cfn_chainermn.names import SHUTDOWN_POLICY, SHUTDOWN_ROLE_RESOURCE, SHUTDOWN_ROLE_STACK_TAG

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_iam import IAMClient

# arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME: a name of [\w+=,.@-], at most 64 characters, under a
# path of printable ASCII (IAM API reference, CreateRole: the RoleName and Path patterns).
ROLE_NAME_MAX = 64
ROLE_ARN = re.compile(rf"arn:aws(?:-[a-z]+)*:iam::\d{{12}}:role/(?:[!-~]*/)?[\w+=,.@-]{{1,{ROLE_NAME_MAX}}}")
# CloudFormation's words for a role it cannot use: "Role ARN is invalid or cannot be assumed".
ROLE_GONE = "cannot be assumed"


def check_role_arn(value: str) -> str:
    """`--role-arn`, before any AWS call: an IAM role's ARN, or ConfigError (exit 2)."""
    if not ROLE_ARN.fullmatch(value):
        raise ConfigError(f"--role-arn: {value!r} is not an IAM role ARN; give arn:aws:iam::ACCOUNT:role/NAME "
                          "(a role CloudFormation may assume that can delete the stack's resources)")
    return value


def role_name(arn: str) -> str:
    return arn.rpartition("/")[2]


def _gone(operation: str, call: Callable[[], object]) -> bool:
    """Run one IAM call; True when IAM says its target no longer exists (NoSuchEntity)."""
    try:
        aws_call(operation, call)
    except AwsError as exc:
        if exc.code != "NoSuchEntity":
            raise
        return True
    return False


def delete_retained_role(iam: IAMClient, arn: str) -> bool:
    """Delete the ShutdownRole `arn` (its inline policy first, as IAM requires); False when it was
    already gone. AwsError when IAM refuses."""
    name = role_name(arn)
    _gone("DeleteRolePolicy", lambda: iam.delete_role_policy(RoleName=name, PolicyName=SHUTDOWN_POLICY))
    return not _gone("DeleteRole", lambda: iam.delete_role(RoleName=name))


def deletes_when_idle(parameters: Mapping[str, str]) -> bool:
    """Whether a stack with these parameters has the ShutdownRole (the template's IdleDeletesStack)."""
    return has_idle_limit(parameters) and parameters.get("IdleAction", "delete") == "delete"


def delete_role_commands(arn: str) -> str:
    """The AWS CLI commands that delete the retained role by hand."""
    name = role_name(arn)
    return (f"`aws iam delete-role-policy --role-name {name} --policy-name {SHUTDOWN_POLICY} && "
            f"aws iam delete-role --role-name {name}`")


def deleted_as(name: str, role: str, given: bool) -> str:
    """What a failed delete says about the role CloudFormation used, and the fix."""
    why = "given with --role-arn" if given else "the role last associated with the stack, which DeleteStack reuses"
    return (f"CloudFormation deleted it as {role} ({why}); if that role may not delete what failed, or is gone, "
            f"run `cfn-chainermn stack delete {name} --role-arn ARN` with a role trusted by "
            "cloudformation.amazonaws.com that may")


def remove_retained_role(iam: IAMClient, arn: str, say: Callable[[str], None]) -> None:
    """Delete the retained ShutdownRole once no stack uses it, saying so; a refusal is a warning naming
    the role and the commands (it can do nothing without its stack)."""
    role = role_name(arn)
    try:
        deleted = delete_retained_role(iam, arn)
    except AwsError as exc:
        say(f"warning: could not delete the idle shutdown's role {role}: {exc}; it can do nothing without its "
            f"stack; delete it with: {delete_role_commands(arn)}")
        return
    say(f"deleted the idle shutdown's role {role}" if deleted else f"the idle shutdown's role {role} was already gone")


def send_delete(cfn: CloudFormationClient, name: str, stack_id: str, role_arn: str | None) -> None:
    """DeleteStack by id (so it can be followed after the name is gone), as `role_arn` when given; a
    role CloudFormation cannot assume (the associated one deleted, say) is a StackError."""
    try:
        if role_arn:
            aws_call("DeleteStack", lambda: cfn.delete_stack(StackName=stack_id, RoleARN=role_arn))
        else:
            aws_call("DeleteStack", lambda: cfn.delete_stack(StackName=stack_id))
    except AwsError as exc:
        if ROLE_GONE not in str(exc):
            raise
        raise StackError(f"stack {name} not deleted: {exc}") from None  # the caller adds the role and the fix


def left_for_later(stack_id: str, arn: str) -> str:
    """What `stack delete --no-wait` says of the retained role it cannot delete before the stack is gone:
    the command names the stack's id, so it cannot reach a new stack given the same name meanwhile."""
    return (f"note: the idle shutdown's role {role_name(arn)} stays after the stack (CloudFormation retains it); "
            f"once the stack is deleted, `cfn-chainermn stack delete {stack_id}` removes it (the stack's id: "
            "never a later stack of the same name)")


def may_be_role_of(role: str, name: str) -> bool:
    """Whether CloudFormation could have named stack `name`'s ShutdownRole `role`: `<stack part>-ShutdownRole-
    <suffix>`, the stack part `name`, or a start of it when the whole would pass IAM's limit (the
    module's docstring). The suffix has no hyphen, so the last `-ShutdownRole-` is the logical id's."""
    stack_part, marker, suffix = role.rpartition(f"-{SHUTDOWN_ROLE_RESOURCE}-")
    if not (marker and stack_part and suffix):
        return False
    return stack_part == name or (name.startswith(stack_part) and len(name + marker + suffix) > ROLE_NAME_MAX)


def left_by_deleted_stack(iam: IAMClient, cfn: CloudFormationClient, name: str,
                          stack_id: str | None = None) -> list[str]:
    """ARNs of the ShutdownRoles that deleted stacks called `name` left (given `stack_id`, that stack
    alone): a role whose name may be one CloudFormation made for it (ListRoles gives no tags, so only
    those are asked for theirs), whose tag names a stack id of that name (or is `stack_id`), which
    CloudFormation describes as DELETE_COMPLETE. A live stack's role is never among them."""
    found = []
    for page in aws_call("ListRoles", lambda: list(iam.get_paginator("list_roles").paginate())):
        for role in page["Roles"]:
            if not may_be_role_of(role["RoleName"], name):
                continue
            tags = aws_call("ListRoleTags", functools.partial(iam.list_role_tags, RoleName=role["RoleName"]))["Tags"]
            tagged = next((t["Value"] for t in tags if t["Key"] == SHUTDOWN_ROLE_STACK_TAG), "")
            if not (tagged == stack_id if stack_id else f":stack/{name}/" in tagged):
                continue
            describe = functools.partial(cfn.describe_stacks, StackName=tagged)
            try:  # one that cannot be described (another region's, a stack deleted ~90 days ago) is not ours
                stacks = aws_call("DescribeStacks", describe)["Stacks"]
            except AwsError:
                continue
            if stacks and stacks[0]["StackStatus"] == "DELETE_COMPLETE":
                found.append(str(role["Arn"]))
    return found


def delete_left_roles(iam: IAMClient, cfn: CloudFormationClient, name: str, say: Callable[[str], None],
                      confirm: Callable[[str], None], *, yes: bool, stack_id: str | None = None) -> bool:
    """`stack delete` of a stack that is gone: delete the ShutdownRoles its deleted stacks left (given
    `stack_id`, that one's; asked first unless `yes`); False when there are none, or, by name, they
    cannot be looked for (a warning says why: the caller may lack iam:ListRoles, and the stack is gone
    either way). By id, looking for them is all the command does, so not being able to is its error."""
    try:
        left = left_by_deleted_stack(iam, cfn, name, stack_id)
    except AwsError as exc:
        if stack_id:
            raise
        say(f"warning: could not look for a role idle shutdown left: {exc}")
        return False
    if not left:
        if stack_id:
            say(f"stack {name} ({stack_id}) is already deleted; it left no role to remove")
        return False
    names = ", ".join(role_name(arn) for arn in left)
    say(f"stack {name} is already deleted; its idle shutdown left the role {names}")
    if not yes:
        confirm(f"Delete {names}?")
    for arn in left:
        remove_retained_role(iam, arn, say)
    return True
