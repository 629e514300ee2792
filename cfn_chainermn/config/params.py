"""The template's parameters, as values derived from a ClusterConfig, and back.

One mapping serves both ends: `cfn-chainermn template --config` writes these values as the
parameters' defaults, and `stack create` passes them as the stack's parameters, so the console
and the CLI can never disagree about what a setting means. Both directions, and the order the
console shows them in, come from the settings table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cfn_chainermn.config.setting import GROUPS, Entry, Param
from cfn_chainermn.config.settings import TEMPLATE_ONLY, settings

if TYPE_CHECKING:
    from cfn_chainermn.config.settings import ClusterConfig


def console_parameters() -> list[tuple[Param, Entry | None]]:
    """Every template parameter in console order (by group, each in field order) with its setting;
    None for a parameter no setting has (TEMPLATE_ONLY)."""
    found: list[tuple[Param, Entry | None]] = [(e.setting.param, e) for e in settings() if e.setting.param]
    found += [(p, None) for p in TEMPLATE_ONLY]
    return [(p, e) for group in GROUPS for p, e in found if p.group == group]


def as_text(value: Any) -> str:
    """A setting's value as CloudFormation takes it: "true"/"false", digits, or the text itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def template_parameters(cfg: ClusterConfig) -> dict[str, str]:
    """Every template parameter as CloudFormation wants it: strings, "" for "not set"."""
    out: dict[str, str] = {}
    for param, entry in console_parameters():
        if entry is None:
            out[param.name] = ""
        else:
            out[param.name] = as_text(getattr(cfg, param.source) if param.source else entry.value(cfg))
    return out


def config_overrides(parameters: Mapping[str, str]) -> dict[str, object]:
    """A stack's current parameters as dotted config fields: the base that `stack update` edits.

    The inverse of template_parameters, so an update that names one flag changes one thing.
    A stack made before AllowSshFromAnywhere existed keeps the range it has: it was allowed then.
    """
    fields = {e.setting.param.name: e.path for e in settings() if e.setting.param}
    out: dict[str, object] = {}
    for key, value in parameters.items():
        path = fields.get(key)
        if path is not None:
            out[path] = value
    if "AllowSshFromAnywhere" not in parameters and _wider_than_opt_in(str(out.get("ssh_cidr", ""))):
        out["allow_ssh_from_anywhere"] = True
    return out


def _wider_than_opt_in(cidr: str) -> bool:
    from cfn_chainermn.config.validation import MIN_SSH_PREFIX, _network

    net = _network(cidr)
    return net is not None and net.prefixlen < MIN_SSH_PREFIX
