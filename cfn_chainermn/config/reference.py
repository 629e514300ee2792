"""The configuration reference, docs/configuration.md, generated from the settings table.

    python -m cfn_chainermn.config.reference > docs/configuration.md    (or `make golden`)

A test compares the committed page with this output, so the reference cannot fall behind a
setting added, renamed or given another default.
"""

from __future__ import annotations

import sys

from cfn_chainermn.config.params import console_parameters
from cfn_chainermn.config.setting import GROUPS, Entry
from cfn_chainermn.config.settings import settings

COMMAND = "python -m cfn_chainermn.config.reference > docs/configuration.md"

INTRO = """\
# Configuration

<!-- Generated from cfn_chainermn/config/settings.py by `{command}`; edit the table there, not this page. -->

Settings come from three places. Later ones win:

1. the built-in defaults;
2. a `cluster.yaml` given with `--config FILE`;
3. command-line flags.

`examples/cluster.yaml` is the documented example, with every field. Validation runs before
any AWS call and reports **every** problem at once, one line each, naming the field and the
fix. Bad settings exit with code 2 and create nothing:

```
$ cfn-chainermn template {example_flags}; echo "exit $?"
{example_errors}
exit 2
```

## Settings

| field | flag | default | template parameter | rule |
|---|---|---|---|---|
"""

OUTRO = """
Every field but {others}
is also a template parameter with the same constraint, so the console and the CLI accept the
same values; `name`, `region` and `tags` belong to the stack (`stack create` applies them) and
`identity_file` to this machine. One limit: the template's Rule refuses only `SshCidr`
`0.0.0.0/0` without `AllowSshFromAnywhere`; other ranges wider than /8 are refused by the CLI
only.

## Template parameters in the console

The console shows the parameters in these groups, in this order; `--config` and the flags
set their defaults (`KeyName` and `SshCidr` get none unless given, so the console asks for them).

| group | parameter | label | description |
|---|---|---|---|
"""

CONTRIBUTING = """
## Adding or changing a setting

Each setting is declared once, as a field of `ClusterConfig` in `config/settings.py` (the
`network:` and `efs:` sections in `config/sections.py`): its type and default, flag and help,
template parameter with its console label and group, allowed values, range or pattern, and the
text of this page. Config loading, validation of those constraints, the CLI flags, the
template's parameters and the mapping back from a stack's parameters all derive from it. A
rule between fields goes into `config/validation.py`, keyed to the field it reports on; a setting
that only means something with another one declares `depends_on`, and `stack update` then drops
the stack's value of it when that one changes (`config/model.py`). Then regenerate this page with
`{command}`.
"""


def _cell(text: str) -> str:
    """Text for a table cell: a pipe (none|new|fs-ID) would end the cell."""
    return text.replace("|", "\\|")


def _flag(e: Entry) -> str:
    s, flag = e.setting, e.setting.flag
    if s.doc_flag:
        return s.doc_flag
    if flag is None:
        return "none"
    if "/" in flag.decl:
        return " / ".join(f"`{f}`" for f in flag.decl.split("/"))
    return _cell(f"`{flag.decl} {flag.metavar}`") if flag.metavar else f"`{flag.decl}`"


def _default(e: Entry) -> str:
    if e.setting.doc_default:
        return e.setting.doc_default
    if isinstance(e.default, bool):
        return f"`{str(e.default).lower()}`"
    return f"`{e.default}`" if e.default != "" else "empty"


def _dependent(e: Entry) -> str:
    """What `stack update` does with the stack's value of a setting that depends on another."""
    parent = e.setting.depends_on
    return (f"; `stack update` drops the stack's value when `{parent}` is given another one and this is not given"
            if parent else "")


# The example's flags; the errors shown are what the flags' settings and validation make of them.
EXAMPLE = (("--efs", "fs-zz"), ("--vpc-cidr", "10.0.0.0/33"))


def _example_errors() -> str:
    from cfn_chainermn.config.model import flag_overrides, load
    from cfn_chainermn.errors import ConfigError

    dests = {e.setting.flag.decl: e.setting.flag.dest for e in settings() if e.setting.flag}
    try:
        load(None, flag_overrides({dests[flag]: value for flag, value in EXAMPLE}))
    except ConfigError as exc:
        return "\n".join(f"error: {p}" for p in exc.problems)
    raise AssertionError(f"the reference's example {EXAMPLE} is valid; pick one that is not")


def render() -> str:
    """The whole page."""
    rows = []
    for e in settings():
        name = f"`{e.setting.param.name}`" if e.setting.param else "none"
        rows.append(f"| `{e.path}` | {_flag(e)} | {_default(e)} | {name} | {e.setting.doc}{_dependent(e)} |")
    others = [f"`{e.path}`" for e in settings() if e.setting.param is None]
    groups = []
    for group in GROUPS:
        params = [p for p, _ in console_parameters() if p.group == group]
        for i, param in enumerate(params):
            label = group.label if i == 0 else ""
            groups.append(f"| {label} | `{param.name}` | {param.label} | {param.description} |")
    flags = " ".join(f"{flag} {value}" for flag, value in EXAMPLE)
    intro = INTRO.format(command=COMMAND, example_flags=flags, example_errors=_example_errors())
    return (intro + "\n".join(rows) + "\n"
            + OUTRO.format(others=", ".join(others[:-1]) + " and " + others[-1])
            + "\n".join(groups) + "\n" + CONTRIBUTING.format(command=COMMAND))


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
