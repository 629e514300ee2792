"""Which cluster NAME means, from the state folder and the command line alone (issue 12, bad input)."""

from __future__ import annotations

import pytest

from cfn_chainermn.cluster.choice import Ask, Kind, decide, using_local, using_stack
from cfn_chainermn.errors import ConfigError

FOLDER = ".local-cluster"


def _decide(name: str, ask: Ask, found: bool, given: bool = False) -> Kind:
    return decide(name, ask, local_found=found, folder=FOLDER, folder_given=given)


@pytest.mark.parametrize(("ask", "found", "kind"), [
    (Ask(), True, "local"),  # a local cluster of that name, nothing said about AWS
    (Ask(), False, "aws"),
    (Ask(aws_flags=("--region",)), False, "aws"),
    (Ask(want="local"), True, "local"),
    (Ask(want="aws"), True, "aws"),  # the local one is not even looked at
    (Ask(want="aws", aws_flags=("--region",)), True, "aws"),
    (Ask(state_dir_flag=True), True, "local"),
])
def test_the_choice(ask: Ask, found: bool, kind: Kind) -> None:
    assert _decide("demo", ask, found) == kind


@pytest.mark.parametrize("flag", ["--region", "--profile", "--endpoint-url", "--config", "--identity-file"])
def test_a_local_cluster_and_a_stacks_option_is_ambiguous_and_names_the_fix(flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        _decide("demo", Ask(aws_flags=(flag,)), True)
    assert str(err.value) == (f"demo: the local cluster demo in .local-cluster and, by {flag}, the AWS stack demo "
                              "could both be meant; add --aws for the stack or --local for the local cluster")


@pytest.mark.parametrize(("ask", "message"), [
    (Ask(want="local", aws_flags=("--region",)),
     "--local and --region: --region is for an AWS stack; drop it, or use --aws for the stack"),
    (Ask(want="aws", state_dir_flag=True),
     "--aws and --state-dir: --state-dir is for a local cluster; drop it, or use --local"),
])
def test_contradictions_are_refused_whatever_the_folder_holds(ask: Ask, message: str) -> None:
    for found in (True, False):
        with pytest.raises(ConfigError, match=f"^{message}$"):
            _decide("demo", ask, found)


@pytest.mark.parametrize(("name", "ask", "given", "message"), [
    ("demo", Ask(want="local"), False,
     "no local cluster demo in .local-cluster; start one with `cfn-chainermn local up --name demo`, "
     "or use --aws for the stack demo"),
    ("demo", Ask(state_dir_flag=True), True,  # --state-dir says local: no quiet fall back to a stack
     "no local cluster demo in .local-cluster; start one with `cfn-chainermn local up --name demo "
     "--state-dir .local-cluster`, or use --aws for the stack demo"),
    ("local", Ask(), False, "no local cluster in .local-cluster; start one with `cfn-chainermn local up`"),
])
def test_a_local_cluster_asked_for_and_missing_names_the_fix(name: str, ask: Ask, given: bool, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _decide(name, ask, False, given)
    assert str(err.value) == message


def test_the_lines_that_say_which_cluster() -> None:
    assert using_local("demo", FOLDER) == "using local cluster demo (.local-cluster)"
    assert using_stack("demo", "us-east-1") == "using stack demo in us-east-1"
    assert using_stack("demo", None) == "using stack demo (no AWS region set)"
