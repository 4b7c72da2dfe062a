"""``python -m mazesearch.params --check|--fill FILE...``: validate params files and list (or
write in) the keys they leave to a schema default."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from pydantic_core import PydanticUndefined

from mazesearch.params.explicit import fill_defaults, missing_keys, schema_defaults
from mazesearch.params.load import ParamsError, load_params


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mazesearch.params",
                                 description="Validate params files and list the keys they leave to a schema default.")
    ap.add_argument("paths", nargs="+", type=Path)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="list missing keys with their defaults (the default action)")
    group.add_argument("--fill", action="store_true", help="write the defaults of missing keys into the file")
    args = ap.parse_args(argv)
    status = 0
    for path in args.paths:
        try:
            yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            status = 2
            continue
        if args.fill:
            unfilled = fill_defaults(path)
            for key in unfilled:
                print(f"{path}: {key}: required, no default; give it a value")
            status = 2 if unfilled else status
        try:
            load_params(path)
        except ParamsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        raw = yaml.safe_load(path.read_text())
        defaults = schema_defaults(raw)
        missing = missing_keys(raw)
        for key in missing:
            default = "required" if defaults[key] is PydanticUndefined else f"default {json.dumps(defaults[key])}"
            print(f"{path}: {key} missing ({default})")
        if missing:
            status = 2
        elif not args.fill:
            print(f"{path}: every key explicit")
    return status


if __name__ == "__main__":
    raise SystemExit(_main())
