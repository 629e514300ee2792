"""The settings table: each setting declared once, and every consumer derived from it agrees."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cfn_chainermn.cli.options import cluster_options, cluster_overrides
from cfn_chainermn.config.model import build
from cfn_chainermn.config.params import config_overrides, console_parameters, template_parameters
from cfn_chainermn.config.setting import GROUPS
from cfn_chainermn.config.settings import TEMPLATE_ONLY, find, settings
from cfn_chainermn.config.validation import RULES, rule

ENTRIES = settings()
FLAGGED = [e for e in ENTRIES if e.setting.flag is not None]


def test_names_are_unique_and_every_parameter_is_in_a_console_group() -> None:
    params = [e.setting.param for e in ENTRIES if e.setting.param] + list(TEMPLATE_ONLY)
    assert len({p.name for p in params}) == len(params)
    assert all(p.group in GROUPS for p in params)
    assert [p for p, _ in console_parameters()] == sorted(params, key=lambda p: GROUPS.index(p.group))
    flags = [e.setting.flag for e in FLAGGED]
    assert len({f.dest for f in flags if f}) == len(flags)


def test_a_constraint_comes_with_its_message() -> None:
    for e in ENTRIES:
        s = e.setting
        assert bool(s.invalid) == bool(s.choices or s.pattern or (s.range and e.kind == "int")), e.path


def test_rules_are_keyed_to_settings_or_sections() -> None:
    keys = {e.path for e in ENTRIES} | {e.section for e in ENTRIES if e.section}
    assert set(RULES) <= keys
    with pytest.raises(KeyError, match="no such setting"):
        rule("efs.mount_piont")


@pytest.mark.parametrize("path", ["ssh_cidr", "network.vpc_cidr", "network.subnet_cidr"])
def test_a_cidr_pattern_takes_exactly_the_prefixes_of_its_range(path: str) -> None:
    e = find(path)
    assert e.setting.param is not None and e.setting.range is not None
    lo, hi = e.setting.range
    taken = [n for n in range(0, 40) if re.fullmatch(e.setting.param.pattern, f"10.0.0.0/{n}")]
    assert taken == list(range(lo, hi + 1))


def test_every_parameter_maps_back_to_its_field() -> None:
    back = config_overrides({p.name: f"<{p.name}>" for p, _ in console_parameters()})
    assert back == {e.path: f"<{e.setting.param.name}>" for e in ENTRIES if e.setting.param}


def _parse(*args: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    @click.command()
    @cluster_options
    def cmd(**kwargs: Any) -> None:
        kwargs.pop("opt_config")
        seen.update(cluster_overrides(kwargs))
        assert kwargs == {}, "every cluster flag is consumed"

    result = CliRunner().invoke(cmd, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize("entry", [e for e in FLAGGED if e.setting.flag and not e.setting.flag.convert],
                         ids=lambda e: e.path)
def test_each_flag_sets_its_field(entry: Any) -> None:
    flag = entry.setting.flag
    if entry.kind == "bool":
        assert _parse(flag.decl.split("/")[0]) == {entry.path: True}
        return
    value = {"int": 7}.get(entry.kind) or (entry.setting.choices[-1] if entry.setting.choices else "x")
    assert _parse(flag.decl, str(value)) == {entry.path: value}


def test_flags_not_given_override_nothing_and_the_converters_spread() -> None:
    assert _parse() == {}
    assert _parse("--on-demand-workers") == {"spot_workers": False}
    assert _parse("--efs", "fs-0123456789abcdef0", "--tag", "a=b", "--tag", "c=d") == {
        "efs.mode": "existing", "efs.file_system_id": "fs-0123456789abcdef0", "tags": {"a": "b", "c": "d"}}


def test_help_shows_the_table_defaults_and_closed_choices() -> None:
    @click.command()
    @cluster_options
    def cmd(**kwargs: Any) -> None: ...

    text = " ".join(CliRunner().invoke(cmd, ["--help"], terminal_width=200).output.split())
    assert "--workers INTEGER Number of workers (0 = master only). [default: 1]" in text
    assert "--tenancy [default|dedicated]" in text and "--efs none|new|fs-ID" in text
    assert "--instance-type TEXT" in text  # 29 types: validation lists them, not --help


def test_template_parameters_read_the_table_defaults() -> None:
    params = template_parameters(build({}))
    for e in ENTRIES:
        if e.setting.param and not e.setting.param.source:
            assert params[e.setting.param.name] == (str(e.default).lower() if e.kind == "bool" else str(e.default))
