"""The cluster's CloudFormation template, built with troposphere from a ClusterConfig.

`build_template` assembles the parts (parameters, network, storage, IAM, compute, outputs);
`render` turns it into deterministic text. The config only sets the parameters' Defaults, so
the released template (the default config) and `stack create` run the very same resources.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from troposphere import Template

from cfn_chainermn import __version__
from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.template.compute import add_compute
from cfn_chainermn.template.iam import add_iam, role_id
from cfn_chainermn.template.idle import add_idle, add_shutdown
from cfn_chainermn.template.network import add_network
from cfn_chainermn.template.outputs import add_outputs
from cfn_chainermn.template.parameters import add_conditions, add_parameters, add_rules
from cfn_chainermn.template.storage import add_storage
from cfn_chainermn.template.userdata import add_agent

FORMATS = ("yaml", "json", "compact")
MAX_INLINE_BYTES = 51_200  # CreateStack's TemplateBody limit: with the agent inside, every template is staged
MAX_S3_BYTES = 1_000_000  # a template read from S3 (TemplateURL, or the console's upload) may be up to 1 MB
DESCRIPTION = (
    f"cfn-chainermn {__version__}: a ChainerMN GPU cluster - 1 master + N workers in a cluster placement "
    "group, shared EFS, a cluster SSH key and an MPI hostfile kept current by the node agent."
)


def build_template(cfg: ClusterConfig) -> Template:
    """The whole template; `cfg` supplies the parameters' Defaults and nothing else."""
    t = Template(Description=DESCRIPTION)
    t.set_version("2010-09-09")
    inputs = add_conditions(t, add_parameters(t, cfg))
    add_rules(t, inputs)
    net = add_network(t, inputs)
    storage = add_storage(t, inputs, net)
    idle = add_idle(t, inputs)
    profiles = add_iam(t, inputs, storage.bucket, idle)
    nodes = add_compute(t, inputs, net, storage, profiles)
    add_outputs(t, inputs, storage, nodes)
    add_shutdown(t, inputs, idle, net.subnet_id, role_id("master"))  # names resources above, so last
    add_agent(t)
    return t


_TOP_ORDER = ("AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Rules", "Conditions",
              "Resources", "Outputs")
_RESOURCE_ORDER = ("Type", "Condition", "DependsOn", "Metadata", "Properties", "CreationPolicy", "UpdatePolicy",
                   "DeletionPolicy", "UpdateReplacePolicy")


def _first(d: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: d[k] for k in order if k in d}, **{k: d[k] for k in sorted(d) if k not in order}}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def template_dict(cfg: ClusterConfig) -> dict[str, Any]:
    """The template as plain data in a stable, readable order: sections as AWS documents them,
    parameters in console order, outputs most useful first, each resource's Type first, everything else sorted."""
    data = build_template(cfg).to_dict()
    out = _first({k: (v if k in ("Parameters", "Outputs") else _sorted(v)) for k, v in data.items()}, _TOP_ORDER)
    out["Resources"] = {name: _first(res, _RESOURCE_ORDER) for name, res in out["Resources"].items()}
    return out


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (UserData) as literal blocks, no line folding."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(cfg: ClusterConfig, fmt: str = "yaml") -> str:
    """Deterministic text: "yaml" (long-form functions, which every parser reads, moto included),
    "json" (indented), or "compact" (the smallest JSON: what `stack create` sends inline)."""
    data = template_dict(cfg)
    if fmt == "json":
        return json.dumps(data, indent=1) + "\n"
    if fmt == "compact":
        return json.dumps(data, separators=(",", ":"))
    if fmt == "yaml":
        return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000,
                             allow_unicode=False))
    raise ValueError(f"unknown template format {fmt!r}; choose one of {', '.join(FORMATS)}")
