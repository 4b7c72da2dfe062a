"""DVC's per-stage cost: parsing the pipeline's YAML files, the way DVC parses them.

``python -m mazesearch.bench dvc_yaml [--repeats 5]`` times, in this process, medians over
repeats, each of ``dvc.lock``, ``dvc.yaml`` and ``params.yaml`` of the checkout parsed:

* ``safe_pure``: ruamel.yaml's safe loader in pure Python (what DVC gets without the C parser);
* ``safe_c``: the same loader on libyaml's C parser (``ruamel.yaml.clib``, a dependency since
  issue 26): DVC reads these files this way several times per stage and per command;
* ``round_trip``: the comment-keeping loader DVC uses to update ``dvc.lock`` after every stage
  (pure Python in every case: C cannot keep comments), so its cost grows with the lock.

Ratios ``safe_pure / safe_c`` say what the C parser is worth; ``round_trip`` times the number of
stages is what one `dvc repro` of every stage spends re-reading its own lock. Writes
``reports/bench/dvc_yaml.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mazesearch.bench import machine_info, write_report

ROOT = Path(__file__).resolve().parents[2]
FILES = ("dvc.lock", "dvc.yaml", "params.yaml")


def _loaders() -> dict:
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    loaders = {"safe_pure": lambda text: YAML(typ="safe", pure=True).load(text),
               "round_trip": lambda text: YAML().load(text)}
    if CParser is not None:
        loaders["safe_c"] = lambda text: YAML(typ="safe").load(text)
    return loaders


def median_seconds(fn, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=str(ROOT), help="the checkout whose YAML files are parsed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="reports/bench/dvc_yaml.json")
    args = ap.parse_args(argv)

    loaders = _loaders()
    doc = {"machine": machine_info(), "repeats": args.repeats, "c_parser": "safe_c" in loaders, "files": {}}
    lock_stages = None
    for name in FILES:
        path = Path(args.root) / name
        if not path.is_file():
            continue
        text = path.read_text()
        entry = {"lines": text.count("\n")}
        entry.update({k: round(median_seconds(fn, text, args.repeats), 4) for k, fn in loaders.items()})
        if "safe_c" in entry and entry["safe_c"] > 0:
            entry["pure_over_c"] = round(entry["safe_pure"] / entry["safe_c"], 2)
        doc["files"][name] = entry
        if name == "dvc.lock":
            lock_stages = len((loaders.get("safe_c", loaders["safe_pure"])(text) or {}).get("stages", {}))
    lock = doc["files"].get("dvc.lock")
    if lock:
        doc["lock_stages"] = lock_stages
        doc["round_trip_s_per_full_repro"] = round(lock["round_trip"] * lock_stages, 1)
    write_report(args.out, doc)
    for name, entry in doc["files"].items():
        print(f"{name}: {entry}")
    if lock:
        print(f"dvc.lock re-read once per stage: {doc['round_trip_s_per_full_repro']} s over {doc['lock_stages']} stages")


if __name__ == "__main__":
    main()
