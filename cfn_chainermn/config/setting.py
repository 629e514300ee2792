"""The vocabulary of the settings table: what one cluster setting declares, and how to walk them.

A setting is a field of ClusterConfig (or of its sections) whose dataclass metadata holds a
`Setting`: the CLI flag, the template parameter with its console label and group, the allowed
values, range or pattern, and the reference text. Everything else (coercion, validation of the
simple constraints, CLI options, template parameters both ways, docs/configuration.md) is
derived by walking `entries()`, so a setting cannot be added in one place and missed in another.
Pure: no click, troposphere or boto3 here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")

# An AWS resource id: PREFIX- and 8 or 17 hex digits, as AWS issues them.
AWS_ID_DIGITS = "([0-9a-f]{8}|[0-9a-f]{17})"
NO_SHELL = r"""[^'"`$\\;\s]"""  # template values land inside single-quoted shell words in UserData
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def cidr_pattern(prefix: str) -> str:
    """An IPv4 CIDR: four octets of 0-255 and a prefix matching `prefix` (host bits are AWS's to check)."""
    return rf"^({_OCTET}\.){{3}}{_OCTET}/({prefix})$"


@dataclass(frozen=True)
class Flag:
    """The command-line flag of a setting (`cluster_options`); a flag given overrides the file."""

    decl: str  # "--tenancy", or "--spot-workers/--on-demand-workers" for a boolean pair
    help: str
    metavar: str | None = None
    choice: bool = False  # click checks the value against the setting's choices (short lists only)
    multiple: bool = False  # repeatable; the values reach `convert` as a tuple
    convert: Callable[[Any], dict[str, Any]] | None = None  # the flag's value -> dotted overrides

    @property
    def dest(self) -> str:
        """The keyword the command receives it as (`opt_` keeps them apart from a command's own)."""
        return "opt_" + self.decl.split("/")[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Group:
    """A parameter group of the console (AWS::CloudFormation::Interface)."""

    label: str


# The console's groups, in console order; each shows its parameters in field order.
ACCESS, CLUSTER, IMAGE = Group("Access"), Group("Cluster (1 master + N workers)"), Group("Machine image and disks")
NETWORK, EFS = Group("Network (empty ids = create new)"), Group("Shared file system (EFS)")
AGENT, IDLE = Group("Node agent"), Group("Idle shutdown")
GROUPS = (ACCESS, CLUSTER, IMAGE, NETWORK, EFS, IDLE, AGENT)


@dataclass(frozen=True)
class Param:
    """The template parameter of a setting: the same value, as the console shows and takes it."""

    name: str
    label: str
    group: Group
    description: str
    type: str = ""  # "" = String, or Number for a whole number
    pattern: str = ""  # AllowedPattern where it is not the setting's own pattern
    constraint: str = ""  # ConstraintDescription: what the console says when a value is refused
    max_length: int | None = None
    ask: bool = False  # no Default while the config leaves it empty, so the console asks for it
    source: str = ""  # the ClusterConfig attribute it reads, where not the field itself


@dataclass(frozen=True)
class Setting:
    """One cluster setting; `problem` applies its simple constraint (rules live in validation)."""

    doc: str  # the reference's rule column: what a value may be and what it does
    flag: Flag | None = None
    param: Param | None = None
    choices: tuple[str, ...] = ()
    range: tuple[int, int] | None = None  # a whole number's bounds, or a CIDR's prefix lengths
    pattern: str = ""  # a regular expression (unanchored) the whole value must match
    optional: bool = True  # empty means "not set" and passes choices and pattern
    invalid: str = ""  # the message when it does not: {value}, {choices}, {min} and {max} filled in
    gate: bool = False  # when this one is invalid, the rest of its section is not checked
    doc_flag: str = ""  # the reference's flag column, where `flag` does not say it
    doc_default: str = ""  # the reference's default column, where the value does not say it
    # The setting (dotted path) this one only means something with: a value kept from a stack's
    # current settings (`stack update`) is dropped when that one is given another value and this
    # one is not given again (config/model.py), as agent_package's pin is when agent_source changes.
    depends_on: str = ""

    def problem(self, path: str, value: Any) -> str | None:
        """`path: message` when `value` breaks the choices, range or pattern; None when it does not."""
        if not self.invalid or (self.optional and value == ""):
            return None
        if self.range is not None:
            lo, hi = self.range
            ok = lo <= value <= hi
        elif self.choices:
            ok = value in self.choices
        else:
            ok = _anchored(self.pattern).match(value) is not None
        if ok:
            return None
        lo, hi = self.range or (0, 0)
        return f"{path}: " + self.invalid.format(value=value, choices=", ".join(self.choices), min=lo, max=hi)


@cache
def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{pattern}$")


def setting(default: T, **kwargs: Any) -> T:
    """A dataclass field with its Setting (typed as its default, so mypy sees the field's type)."""
    return field(default=default, metadata={"setting": Setting(**kwargs)})


def setting_factory(factory: Callable[[], T], **kwargs: Any) -> T:
    """`setting` for a mutable default (tags)."""
    return field(default_factory=factory, metadata={"setting": Setting(**kwargs)})


def aws_id(prefix: str, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of an optional AWS id setting: empty (= create or skip it) or PREFIX-<hex>."""
    example = f"{prefix}-0123456789abcdef0"
    kwargs["param"] = dataclasses.replace(kwargs["param"], constraint=f"empty or {example}")
    return {"pattern": f"{prefix}-{AWS_ID_DIGITS}",
            "invalid": f"{{value!r}} is not a valid id; expected the form {example}", **kwargs}


@dataclass(frozen=True)
class Entry:
    """A setting where the table puts it: its dotted path, type and default."""

    path: str  # as in cluster.yaml: "tenancy", "efs.mode"
    setting: Setting
    kind: str  # the field's annotation: "str", "int", "bool" or "Mapping[str, str]"
    default: Any

    @property
    def section(self) -> str:
        """"network" for network.vpc_id; "" for a top-level field."""
        return self.path.rpartition(".")[0]

    def value(self, cfg: Any) -> Any:
        for part in self.path.split("."):
            cfg = getattr(cfg, part)
        return cfg


def entries(root: type) -> Iterator[Entry]:
    """Every setting of `root` in field order, sections' settings in place."""
    yield from _entries(root, "")


def _entries(cls: type, prefix: str) -> Iterator[Entry]:
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:
            yield from _entries(f.metadata["section"], f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc,operator]
        yield Entry(f"{prefix}{f.name}", f.metadata["setting"], str(f.type), default)


def sections(cls: type) -> Mapping[str, type]:
    """The nested sections of `cls` by field name (fields with metadata {"section": their class})."""
    return {f.name: f.metadata["section"] for f in dataclasses.fields(cls) if "section" in f.metadata}
