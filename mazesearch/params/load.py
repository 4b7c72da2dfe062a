"""params.yaml -> :class:`~mazesearch.params.schema.Params`, or one message naming every bad key.

Stages call :func:`load_params_or_exit` (one ``error:`` line, exit 2, before anything is written);
library code never reads params.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from mazesearch.params.schema import Params


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every offending key."""


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        got_txt = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {msg}{got_txt}")
    return "; ".join(lines)  # one line: a stage prints exactly one `error:` line


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(f"{source} is invalid: {_format(err)}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def require_section(params: Params, section: str, stage: str):
    """``params.<section>``, or an ``InputError`` saying the stage needs it."""
    from mazesearch.io import InputError

    value = getattr(params, section)
    if value is None:
        raise InputError("params.yaml", f"no `{section}` section (needed by stage {stage})")
    return value


def suite_tokenizer(params: Params, suite: str) -> dict:
    """``tokenizer.*`` (coord, edges, edge_order, seed) with ``evaluate.suites.<suite>.tokenizer`` applied."""
    over = params.evaluate.suites[suite].tokenizer.model_dump()
    base = params.tokenizer.model_dump(include=set(over))
    return {k: base[k] if over[k] is None else over[k] for k in over}


def load_params_or_exit(path: str | Path = "params.yaml") -> Params:
    """For stages: print the one clear message and exit 2 on bad params."""
    try:
        return load_params(path)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
