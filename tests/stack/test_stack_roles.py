"""stack/roles.py's search for the ShutdownRole a deleted stack left, by name: CloudFormation names the
role `<stack>-ShutdownRole-<suffix>` and, for a stack name too long for IAM's 64 characters, cuts the
stack part from the right (the module's docstring cites the names this rests on). Only roles that
name could be are asked for their tags; the tag, holding the whole stack id, decides. Over Stubber."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import ACCOUNT, REGION, queue_role_removal, role_entry, stack

from cfn_chainermn.stack.roles import may_be_role_of

# A 128-character stack name (CloudFormation's longest) and the 64-character role CloudFormation makes
# for it: the first 37 characters, the whole logical id, a 13-character suffix.
LONG = ("vision-team-resnet50-imagenet-sweep-" * 4)[:128]
SUFFIX = "1TCLUMCY77KXG"
LONG_ROLE = f"{LONG[:37]}-ShutdownRole-{SUFFIX}"
LONG_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{LONG}/0f1e2d3c-aaaa-bbbb-cccc-000000000002"


@pytest.mark.parametrize(("role", "name", "may"), [
    ("demo-ShutdownRole-AbCdEf", "demo", True),
    (LONG_ROLE, LONG, True),
    (f"{'x' * 36}--ShutdownRole-{SUFFIX}", f"{'x' * 36}-{'y' * 91}", True),  # a cut that ends in a hyphen
    ("a-ShutdownRole-b-ShutdownRole-AbCdEf", "a-ShutdownRole-b", True),  # the last marker is the logical id's
    ("demo-other-ShutdownRole-AbCdEf", "demo", False),  # another stack whose name starts with this one's
    ("demo-ShutdownRole-AbCdEf", "dem", False),
    ("vision-ShutdownRole-AbCdEf", "vision-team", False),  # the whole name fits: CloudFormation cuts nothing
    ("vision-ShutdownRole-AbCdEf", LONG, True),  # it might have been cut: ListRoleTags decides
    ("demo-MasterRole-AbCdEf", "demo", False),
    ("demo-ShutdownRole-", "demo", False),
    ("-ShutdownRole-AbCdEf", "demo", False),
])
def test_a_role_name_may_be_the_stacks_when_it_is_a_start_of_its_name_and_the_logical_id(
        role: str, name: str, may: bool) -> None:
    assert may_be_role_of(role, name) is may


def test_stack_delete_of_a_128_character_stack_finds_the_role_whose_name_cloudformation_cut(
        stubbed: Any, run_cli: Any) -> None:
    """Of three ShutdownRoles two may be the stack's by name (the others get no ListRoleTags: the Stubber
    fails on a call not queued); of those, the tag picks this stack's, not that of another 128-character
    stack with the same first 37 characters."""
    assert len(LONG) == 128 and len(LONG_ROLE) == 64
    twin = LONG[:37] + "z" * 91
    twin_role = f"{LONG[:37]}-ShutdownRole-2ABCDEFGHIJKL"
    cfn, iam = stubbed("cloudformation"), stubbed("iam")
    cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {LONG} does not exist",
                         expected_params={"StackName": LONG})
    iam.add_response("list_roles", {"Roles": [role_entry(n) for n in (
        "demo-ShutdownRole-AbCdEf", twin_role, LONG_ROLE, "ops-admin")]})
    iam.add_response("list_role_tags", {"Tags": [
        {"Key": "cfn-chainermn:stack-id", "Value": LONG_ID.replace(f"/{LONG}/", f"/{twin}/")}]},
        {"RoleName": twin_role})
    queue_role_removal(iam, cfn, LONG_ROLE, stack("DELETE_COMPLETE", StackName=LONG, StackId=LONG_ID))
    result = run_cli("stack", "delete", LONG, "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [f"stack {LONG} is already deleted; its idle shutdown left the role {LONG_ROLE}",
                                       f"deleted the idle shutdown's role {LONG_ROLE}"]
