"""``python -m mazesearch.bench <name> [options]``: run benchmark ``mazesearch/bench/<name>.py``.

``all`` runs every benchmark module with its default options, in alphabetical order (but for
those that set ``IN_ALL = False``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import mazesearch.bench as bench


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m mazesearch.bench {{{','.join(names + ['all'])}}} [options]")
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name == "all":
        for each in names:
            module = importlib.import_module(f"mazesearch.bench.{each}")
            if not getattr(module, "IN_ALL", True):
                continue
            print(f"== bench {each}", flush=True)
            module.main([])
        return
    if name not in names:
        print(f"error: unknown benchmark {name!r}; available: {', '.join(names)}, all", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(f"mazesearch.bench.{name}").main(rest)


if __name__ == "__main__":
    main()
