"""Typed configs: dataclass schemas, YAML presets and dotted ``key.sub=value`` overrides.

Every job (``generate``, ``train_drf``, ...) has one dataclass schema. A preset is a YAML file whose
top-level ``job`` key names the schema; the remaining keys fill the dataclass. Unknown keys and values of
the wrong type raise :class:`ConfigError` naming the full dotted key, so a typo never passes silently.

Each dataclass field carries a docstring (a string literal right after the field, the attribute-docstring
convention also read by Sphinx); :func:`field_docs` reads them back and ``tests/test_config.py`` checks
that no field lacks one.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

#: job name -> "module:Class" of its config schema. Imported lazily so ``validate`` loads no weights.
JOB_SCHEMAS: dict[str, str] = {
    "generate": "vidreward.generate:GenerateConfig",
    "annotate": "vidreward.annotate.config:AnnotateConfig",
    "train_drf": "vidreward.train.drf_config:DRFConfig",
    "train_gran_dpo": "vidreward.train.gran_dpo_config:GranDPOConfig",
    "train_reward_model": "vidreward.train.reward_model_config:RewardModelTrainConfig",
    "halo_prompts": "vidreward.halo.job_configs:HaloPromptsConfig",
    "halo_label_patches": "vidreward.halo.job_configs:HaloLabelPatchesConfig",
    "halo_sample": "vidreward.halo.job_configs:HaloSampleConfig",
    "halo_score": "vidreward.halo.job_configs:HaloScoreConfig",
    "world_gran_dpo": "vidreward.halo.world_loop_config:WorldGranDPOConfig",
}


class ConfigError(ValueError):
    """A config key is unknown, missing or has a value of the wrong type."""


def resolve_schema(job: str) -> type:
    """Return the dataclass schema registered for ``job``, or a ``module:Class`` path given directly."""
    target = JOB_SCHEMAS.get(job, job)
    if ":" not in target:
        raise ConfigError(f"job: unknown job {job!r}; known jobs: {sorted(JOB_SCHEMAS)}")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], value), parsing the value as YAML (``1e-5``, ``[1, 2]``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.sub=value`` override set (creating nested dicts)."""
    data = dict(data)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "1e-5" as a string; accept it as the float the user meant.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types by their dotted name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"{key}: unknown config key; valid keys here: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], prefix + name)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: required config key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from err
    return obj


def to_dict(obj: Any) -> Any:
    """Turn a config dataclass back into plain YAML-safe data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with an error naming the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, job: str | None = None
) -> tuple[str, Any]:
    """Load a preset and apply overrides; return (job name, config dataclass).

    ``job`` is taken from the YAML's ``job`` key unless given; a mismatch between the two is an error.
    With ``path=None`` the schema's defaults are used.
    """
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    file_job = data.pop("job", None)
    if job is not None and file_job is not None and file_job != job:
        raise ConfigError(f"job: preset {path} is for job {file_job!r}, not {job!r}")
    job = job or file_job
    if job is None:
        raise ConfigError(f"job: preset {path} has no top-level 'job' key (one of {sorted(JOB_SCHEMAS)})")
    schema = resolve_schema(job)
    return job, from_dict(schema, data)


def field_docs(cls: type) -> dict[str, str]:
    """Return {field name: docstring} for a dataclass whose fields carry attribute docstrings."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs
