"""The cluster's settings: loaded from cluster.yaml, overridden by CLI flags, validated once.

The fields, their types and defaults are the settings table (settings.py); this module reads a
mapping into it, checking each value against its field's declared type.

Validation collects every problem before raising, and each message names the field and the
fix, because a user who fixes one error only to meet the next one gives up on the tool.
Nothing here touches AWS: this runs before the first API call, so bad input creates nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfn_chainermn.config.sections import EfsConfig, NetworkConfig
from cfn_chainermn.config.setting import sections
from cfn_chainermn.config.settings import (  # re-exported: the table's names are the config's vocabulary
    DEFAULT_AMI_SSM_PARAMETER,
    EFS_MODES,
    EFS_PERFORMANCE_MODES,
    EFS_THROUGHPUT_MODES,
    MAX_ROOT_VOLUME_GIB,
    MAX_WORKERS,
    TENANCIES,
    ClusterConfig,
    settings,
)
from cfn_chainermn.config.validation import validate
from cfn_chainermn.errors import ConfigError

__all__ = [
    "DEFAULT_AMI_SSM_PARAMETER", "EFS_MODES", "EFS_PERFORMANCE_MODES", "EFS_THROUGHPUT_MODES",
    "MAX_ROOT_VOLUME_GIB", "MAX_WORKERS", "TENANCIES", "ClusterConfig", "EfsConfig", "NetworkConfig",
    "build", "flag_overrides", "load", "load_file", "merge", "validate", "without_stale",
]

_SECTIONS = sections(ClusterConfig)


def _field_types(cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _coerce(path: str, value: Any, type_name: Any, problems: list[str]) -> Any:
    """Check one scalar against its declared type (names as strings under `annotations`)."""
    t = str(type_name)
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        problems.append(f"{path}: expected true or false, got {value!r}")
    elif t == "int":
        if isinstance(value, bool):
            problems.append(f"{path}: expected a whole number, got {value!r}")
        elif isinstance(value, int):
            return value
        elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        else:
            problems.append(f"{path}: expected a whole number, got {value!r}")
    elif t.startswith("Mapping"):
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()
        ):
            return {k: str(v) for k, v in value.items()}
        problems.append(f"{path}: expected a mapping of tag names to values, got {value!r}")
    elif value is None:
        return ""
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    else:
        problems.append(f"{path}: expected text, got {value!r}")
    return None


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in types:
            problems.append(f"{path}: unknown field; known fields here: {', '.join(types)}")
            continue
        section = _SECTIONS.get(key) if cls is ClusterConfig else None
        if section is not None:
            if not isinstance(value, Mapping):
                problems.append(f"{path}: expected a mapping of {', '.join(_field_types(section))}")
                continue
            kwargs[key] = _build(section, value, f"{path}.", problems)
            continue
        coerced = _coerce(path, value, types[key], problems)
        if coerced is not None:
            kwargs[key] = coerced
    return cls(**kwargs)


def _without_aliases(path: Path) -> Any:
    """PyYAML's SafeLoader, refusing aliases (*name): a cluster.yaml needs none, and a few hundred
    bytes of nested aliases expand into a value whose echo in an error message is gigabytes."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ConfigError(f"--config: {path} line {line}: YAML aliases (*name) are not supported; "
                                  "write the value out")
            return super().compose_node(parent, index)

    return Loader


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a cluster.yaml into a plain mapping (validation happens later, all at once)."""
    import yaml  # PyYAML: only needed when a file is given

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {p}: {exc.strerror}; give a readable YAML file") from None
    try:
        data = yaml.load(text, Loader=_without_aliases(p))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config: {p}{where} is not valid YAML; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {p} must hold a mapping of settings, not {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply dotted-path overrides (`efs.mode`) from CLI flags on top of file settings."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        head, _, tail = dotted.partition(".")
        if tail:
            section = merged.setdefault(head, {})
            if isinstance(section, dict):
                section[tail] = value
        elif isinstance(value, Mapping) and isinstance(merged.get(head), dict):
            merged[head] = {**merged[head], **value}  # --tag adds to the file's tags
        else:
            merged[head] = value
    return merged


def flag_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted config paths from the cluster flags given (`values` by each Flag's dest; None = not given)."""
    out: dict[str, Any] = {}
    for entry in settings():
        flag = entry.setting.flag
        value = None if flag is None else values.get(flag.dest)
        if flag is None or value is None or (flag.multiple and not value):
            continue
        out.update(flag.convert(value) if flag.convert else {entry.path: value})
    return out


def build(data: Mapping[str, Any], *, for_stack: bool = False) -> ClusterConfig:
    """Settings from a mapping, validated; ConfigError lists every problem."""
    problems: list[str] = []
    cfg: ClusterConfig = _build(ClusterConfig, data, "", problems)
    problems.extend(validate(cfg, for_stack=for_stack))
    if problems:
        raise ConfigError(problems)
    return cfg


def load(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    for_stack: bool = False,
    base: Mapping[str, Any] | None = None,
) -> ClusterConfig:
    """cluster.yaml (optional) plus CLI overrides, validated.

    `base` (dotted fields, e.g. a stack's current settings) sits under the file and the flags.
    """
    file = load_file(path) if path else {}
    data = merge(without_stale(base or {}, merge(file, overrides or {})), file)
    return build(merge(data, overrides or {}), for_stack=for_stack)


def without_stale(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """`base` (a stack's current settings) less each setting whose `depends_on` is `given` another
    value while it is not given itself: what it was kept for is gone (agent_package's pin, once
    agent_source leaves index), and validation then asks for a new one where one is needed."""
    kept = merge({}, base)
    table = {e.path: e for e in settings()}
    for entry in table.values():
        parent = table.get(entry.setting.depends_on)
        if parent is None or _lookup(given, entry.path) is not None:
            continue
        new, old = _lookup(given, parent.path), _lookup(kept, parent.path)
        if new is not None and _coerce(parent.path, new, parent.kind, []) != _coerce(
                parent.path, parent.default if old is None else old, parent.kind, []):
            head, _, tail = entry.path.rpartition(".")
            section = kept.get(head) if head else kept
            if isinstance(section, dict):
                section.pop(tail, None)
    return kept


def _lookup(data: Any, path: str) -> Any:
    """The value at dotted `path` in nested `data`; None where there is none."""
    for part in path.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data
