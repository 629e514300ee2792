"""Which cluster NAME means, decided before any AWS call: a local cluster or the AWS stack.

A local cluster's state folder may hold a cluster of the same name as a stack (`make demo`
leaves `.local-cluster` behind; `local up --name demo`). Whether the stack exists cannot be
known without asking AWS, so the rule reads only what is here: the folder, and the options the
command line gave. `--local` / `--aws` say it outright. Without them a local cluster of that
name is used, unless the command line also gave an option that only means something for a
stack (--region, --profile, --endpoint-url, --config, -i): then both could be meant, and the
command stops in one line asking for `--local` or `--aws` (issue 12, bad input). Options taken
from the environment (AWS_REGION, AWS_PROFILE, ...) do not count: they are set once for every
command, not for this one. Whatever is chosen, the command says which on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cfn_chainermn.errors import ConfigError

Kind = Literal["local", "aws"]


@dataclass(frozen=True)
class Ask:
    """What the command line said: `want` (--local/--aws), the stack-only options it gave, and
    whether it named the state folder (--state-dir, not CFN_CHAINERMN_STATE_DIR)."""

    want: Kind | None = None
    aws_flags: tuple[str, ...] = ()
    state_dir_flag: bool = False

    def refuse_contradictions(self) -> None:
        """--local with a stack's option, or --aws with --state-dir: one of them is a mistake."""
        if self.want == "local" and self.aws_flags:
            raise ConfigError(f"--local and {self.aws_flags[0]}: {self.aws_flags[0]} is for an AWS stack; "
                              f"drop it, or use --aws for the stack")
        if self.want == "aws" and self.state_dir_flag:
            raise ConfigError("--aws and --state-dir: --state-dir is for a local cluster; drop it, or use --local")


def decide(name: str, ask: Ask, *, local_found: bool, folder: str, folder_given: bool) -> Kind:
    """"local" or "aws" for NAME, or a usage error naming the fix. `folder` is the state folder
    that was read, `folder_given` whether --state-dir (or its variable) named it, `local_found`
    whether it holds a cluster called NAME."""
    ask.refuse_contradictions()
    if ask.want == "aws":
        return "aws"
    if ask.want == "local" or ask.state_dir_flag or name == "local":
        if not local_found:
            raise ConfigError(_no_local(name, folder, folder_given))
        return "local"
    if local_found and ask.aws_flags:
        raise ConfigError(f"{name}: the local cluster {name} in {folder} and, by {ask.aws_flags[0]}, the AWS stack "
                          f"{name} could both be meant; add --aws for the stack or --local for the local cluster")
    return "local" if local_found else "aws"


def _no_local(name: str, folder: str, folder_given: bool) -> str:
    where = f" --state-dir {folder}" if folder_given else ""
    if name == "local":
        return f"no local cluster in {folder}; start one with `cfn-chainermn local up{where}`"
    return (f"no local cluster {name} in {folder}; start one with `cfn-chainermn local up --name {name}{where}`, "
            f"or use --aws for the stack {name}")


def using_local(name: str, folder: str) -> str:
    """The line a command prints when it works with a local cluster."""
    return f"using local cluster {name} ({folder})"


def using_stack(name: str, region: str | None) -> str:
    """The line a command prints when it works with an AWS stack."""
    return f"using stack {name} in {region}" if region else f"using stack {name} (no AWS region set)"
