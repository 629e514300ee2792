"""Options shared by commands: the cluster flags that mirror cluster.yaml (AWS access: aws_flags.py).

Each flag comes from its setting in the settings table (config/settings.py): name, help, type,
choices and default. A flag given on the command line overrides the same field of `--config`;
flags not given leave the file (or the default) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cfn_chainermn.config.setting import Entry, Flag
from cfn_chainermn.config.settings import settings

if TYPE_CHECKING:
    from cfn_chainermn.config.settings import ClusterConfig

F = TypeVar("F", bound=Callable[..., Any])


def _flags() -> list[tuple[Entry, Flag]]:
    return [(e, e.setting.flag) for e in settings() if e.setting.flag is not None]


def _help(entry: Entry, flag: Flag) -> str:
    """The flag's help, with the setting's default where it has one short enough to say."""
    if entry.kind in ("str", "int") and entry.default != "" and len(str(entry.default)) <= 40:
        return f"{flag.help}  [default: {entry.default}]"
    return flag.help


def _option(entry: Entry, flag: Flag) -> Callable[[F], F]:
    """The click option of one setting; default None, so a flag not given overrides nothing."""
    kwargs: dict[str, Any] = {"help": _help(entry, flag)}
    if flag.multiple:
        kwargs["multiple"] = True
    else:
        kwargs["default"] = None
    if entry.kind == "bool" and "/" not in flag.decl:
        kwargs["is_flag"] = True
    elif entry.kind == "int":
        kwargs["type"] = int
    elif flag.choice:
        kwargs["type"] = click.Choice(entry.setting.choices)
    if flag.metavar:
        kwargs["metavar"] = flag.metavar
    return click.option(flag.decl, flag.dest, **kwargs)


def cluster_options(func: F) -> F:
    """Add `--config` and every cluster flag; the command receives them in `**kwargs`."""
    decorators: list[Callable[[F], F]] = [
        click.option("--config", "opt_config", type=click.Path(dir_okay=False),
                     help="cluster.yaml to read settings from (flags override it)."),
        *(_option(entry, flag) for entry, flag in _flags()),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


def cluster_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Dotted config paths for the flags that were given; pops them from `kwargs`."""
    from cfn_chainermn.config.model import flag_overrides

    return flag_overrides({flag.dest: kwargs.pop(flag.dest, None) for _, flag in _flags()})


def config_from_options(kwargs: dict[str, Any], *, name: str | None = None, for_stack: bool = False,
                        base: Mapping[str, Any] | None = None) -> ClusterConfig:
    """The validated config for a command: `base`, then the --config file, then flags, then NAME."""
    from cfn_chainermn.config.model import load

    path = kwargs.pop("opt_config", None)
    overrides = cluster_overrides(kwargs)
    if name is not None:
        overrides["name"] = name
    return load(path, overrides, for_stack=for_stack, base=base)
