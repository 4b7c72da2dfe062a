"""Every key explicit: the shipped params files write out every key the schema knows, so ``dvc
params diff`` shows each value a run used and ``dvc exp run -S key=value`` can set any of them.
:func:`missing_keys` lists the keys a params mapping leaves to a default; :func:`fill_defaults`
writes those defaults in (``python -m mazesearch.params --check/--fill``)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mazesearch.params.schema import Params


def _model_of(annotation) -> tuple[str, type[BaseModel]] | None:
    """("model", M) for ``M`` or ``M | None``; ("dict", M) for ``dict[str, M]``; None for a leaf."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in args if a is not type(None)]
        return _model_of(models[0]) if len(models) == 1 else None
    if origin is dict and len(args) == 2:
        inner = _model_of(args[1])
        return ("dict", inner[1]) if inner and inner[0] == "model" else None
    return None


def _walk(model: type[BaseModel], raw: Any, prefix: str) -> Iterator[tuple[str, Any, bool]]:
    """(dotted key, schema default, present in ``raw``) for every leaf key of ``model``.

    A nested model is walked even where ``raw`` lacks it (its leaves are then all absent); a
    ``dict[str, Model]`` is walked entry by entry, so where ``raw`` lacks it only its own key is
    reported. ``PydanticUndefined`` as the default means the key is required.
    """
    raw = raw if isinstance(raw, dict) else {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        kind = _model_of(field.annotation)
        if kind is None:
            default = field.default if field.default_factory is None else field.default_factory()
            if isinstance(default, list):  # a list of models (patching.paths): as written in YAML
                default = [d.model_dump() if isinstance(d, BaseModel) else d for d in default]
            yield key, default, name in raw
        elif kind[0] == "model":
            yield from _walk(kind[1], raw.get(name), f"{key}.")
        elif isinstance(raw.get(name), dict):
            for entry, value in raw[name].items():
                yield from _walk(kind[1], value, f"{key}.{entry}.")
        else:
            yield key, field.default, name in raw


def missing_keys(raw: Any, model: type[BaseModel] = Params) -> list[str]:
    """Dotted keys of the schema that ``raw`` (a parsed params.yaml) leaves out.

    Every field of every section, of every entry of ``datasets`` and ``evaluate.suites``, and of
    nested models (``evaluate.suites.<s>.tokenizer.coord``) must be written out; a key given as
    ``null`` is present. Unknown keys are :func:`parse_params`' business, not this function's.
    """
    return [key for key, _, present in _walk(model, raw, "") if not present]


def schema_defaults(raw: Any, model: type[BaseModel] = Params) -> dict[str, Any]:
    """Dotted key -> schema default for every leaf key (``PydanticUndefined``: required)."""
    return {key: default for key, default, _ in _walk(model, raw, "")}


def fill_defaults(path: str | Path) -> list[str]:
    """Write the schema default of every missing key into ``path``, keeping its comments and
    layout (ruamel, as ``dvc exp run -S`` does). Returns the keys it could not fill (required)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml_rt = YAML()
    path = Path(path)
    data = yaml_rt.load(path.read_text())
    defaults = schema_defaults(data)
    unfilled = []
    for key in missing_keys(data):
        if defaults[key] is PydanticUndefined:
            unfilled.append(key)
            continue
        *parents, last = key.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = CommentedMap()
            node = node[part]
        value = defaults[key]
        value = list(value) if isinstance(value, list) else value
        prefix = key[: -len(last)]  # keep the schema's key order: insert after the fields before it
        order = list(dict.fromkeys(k[len(prefix):].split(".")[0] for k in defaults if k.startswith(prefix)))
        before = set(order[: order.index(last)])
        node.insert(sum(k in before for k in node), last, value)
    with path.open("w") as f:
        yaml_rt.dump(data, f)
    return unfilled
