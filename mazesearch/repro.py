"""``dvc repro`` on every core: independent stages run side by side.

``python -m mazesearch.repro [-j N] [-f] [--downstream | -s] [--dry] [TARGET ...]`` reproduces
the pipeline (or the targets and everything upstream of them, as ``dvc repro TARGET`` does; with
``--downstream``, everything below them; with ``-s``, the targets alone) by launching one
``dvc repro --single-item STAGE`` per stage, up to ``-j`` cores busy at once (default: every
core). ``make demo`` calls it.

Why: ``dvc repro`` runs one stage at a time, and most stages use one core (the data stages, the
mechanisms stages, and every stage's ~8 s of imports), so on a 2-core machine half of it idles.
DVC itself supports this: it releases the repo lock while a stage's command runs and guards the
outputs with read/write locks (``dvc/stage/run.py``: ``unlocked_repo``), and ``--wait-for-lock``
queues the short locked phases (hashing, ``dvc.lock``) of concurrent processes.

What stays as ``dvc repro`` does it:
- a stage starts only after every stage it depends on has finished; a stage is launched when
  ``dvc status`` lists it or a stage upstream of it was launched, and DVC skips it when nothing
  it depends on changed;
- the outputs and each stage's ``dvc.lock`` entry are the same bytes (the stages are the same
  processes with the same params); when this run creates ``dvc.lock``, its stages are put in
  ``dvc repro``'s order at the end, so the file does not depend on which stage finished first.

Cores: a stage claims as many cores as the largest ``num_threads`` among the params it lists
(1 when it lists none), capped at ``-j``; stages start while their claims fit. Two-thread
stages (train, evaluate, the causal stages) therefore run alone on two cores, and one-thread
stages two at a time. Among the stages that are ready, the one with the most stages downstream
starts first (``train``'s inputs before the suites').

Each stage's DVC output goes to ``.dvc/tmp/repro/<stage>.log``; this prints one line per start
and finish. On a failure no new stage starts, the running ones finish, the failed stage's log
tail is printed and the exit status is 1. Bad arguments: one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

LOG_DIR = Path(".dvc/tmp/repro")
POLL_SECONDS = 0.2


class Process(Protocol):
    def poll(self) -> int | None: ...


@dataclass(frozen=True)
class Plan:
    """What to run: ``order`` (dvc repro's order: every stage after its upstream stages),
    ``upstream[s]`` (the stages ``s`` depends on, within the plan), ``cores[s]`` (its claim),
    ``changed`` (the stages ``dvc status`` lists, or all of them when forced)."""

    order: list[str]
    upstream: dict[str, set[str]]
    cores: dict[str, int]
    changed: set[str]

    def downstream_counts(self) -> dict[str, int]:
        """Number of stages downstream of each stage (transitively)."""
        below: dict[str, set[str]] = {s: set() for s in self.order}
        for s in reversed(self.order):  # a stage's downstream is complete before its upstream's
            for up in self.upstream[s]:
                below[up] |= below[s] | {s}
        return {s: len(below[s]) for s in self.order}


@dataclass
class Outcome:
    launched: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: str | None = None
    returncode: int = 0


def schedule(plan: Plan, jobs: int, launch: Callable[[str], Process],
             report: Callable[[str], None] = lambda line: None,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Run ``plan`` with at most ``jobs`` cores claimed at once: ``launch(stage)`` starts a
    stage and returns something with ``poll()`` (None while running, else the exit status).

    A stage that is neither changed nor below a launched stage is passed over without a launch.
    The first failure stops new launches; the stages running then are waited for."""
    priority = plan.downstream_counts()
    rank = {s: i for i, s in enumerate(plan.order)}
    claims = {s: min(plan.cores[s], jobs) for s in plan.order}
    pending = set(plan.order)
    finished: set[str] = set()
    launched: set[str] = set()
    running: dict[str, tuple[Process, float]] = {}
    out = Outcome()
    start = clock()

    def stamp() -> str:
        minutes, seconds = divmod(int(clock() - start), 60)
        return f"[{minutes:3d}:{seconds:02d}]"

    while pending or running:
        for stage, (proc, began) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[stage]
            finished.add(stage)
            out.seconds[stage] = clock() - began
            if code != 0 and out.failed is None:
                out.failed, out.returncode = stage, code
                report(f"{stamp()} FAILED {stage} (exit {code}) after {out.seconds[stage]:.1f} s")
            elif code == 0:
                report(f"{stamp()} done   {stage} {out.seconds[stage]:.1f} s")
        if out.failed is not None:
            pending.clear()
        ready = sorted((s for s in pending if plan.upstream[s] <= finished),
                       key=lambda s: (-priority[s], rank[s]))
        busy = sum(claims[s] for s in running)
        for stage in ready:
            if stage not in plan.changed and not (plan.upstream[stage] & launched):
                pending.discard(stage)  # up to date, and nothing above it will run
                finished.add(stage)
                continue
            claim = claims[stage]
            if busy + claim > jobs:
                break  # keep the order: a wide stage is not overtaken by narrow ones forever
            pending.discard(stage)
            running[stage] = (launch(stage), clock())
            out.launched.append(stage)
            launched.add(stage)
            busy += claim
            report(f"{stamp()} start  {stage} ({claim} core{'s' if claim > 1 else ''})")
        if running:
            sleep(POLL_SECONDS)
    return out


# ---------------------------------------------------------------------------- DVC side


def _claim(stage) -> int:
    """Largest ``num_threads`` among the params the stage lists (1 if none)."""
    from dvc.dependency.param import ParamsDependency

    def threads(params: dict) -> list[int]:  # keys may be dotted ("evaluate.num_threads") or sections
        return [t for key, value in params.items() for t in
                ([value] if key.rsplit(".", 1)[-1] == "num_threads" and isinstance(value, int)
                 else threads(value) if isinstance(value, dict) else [])]

    return max([1] + [t for dep in stage.deps if isinstance(dep, ParamsDependency)
                      for t in threads(dep.read_params())])


def plan_from_repo(root: str | Path, targets: list[str], force: bool, downstream: bool = False,
                   single_item: bool = False) -> Plan:
    """The plan ``dvc repro [--downstream | --single-item] TARGETS`` would follow in the repo at
    ``root``. A stage's upstream set is transitive (within the plan), so a plan of scattered
    targets still runs them in dependency order."""
    import networkx as nx

    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(root)) as repo:
        graph = get_active_graph(repo.index.graph)  # edges: stage -> the stages it depends on
        by_name = {s.addressing: s for s in graph}
        # Stage names straight from the graph (DVC's collect re-reads dvc.yaml per target: ~0.5 s
        # each); anything else (a path, a dvc.yaml) goes through DVC's own collection.
        def resolve(target: str) -> list:
            return [by_name[target]] if target in by_name else collect_stages(repo, [target])

        stages = [s for t in targets for s in resolve(t)] if targets else None
        if single_item and stages:
            chosen = set(stages)
            order_stages = [s for s in plan_repro(graph, stages) if s in chosen]
        else:
            order_stages = plan_repro(graph, stages, downstream=downstream)
        order = [s.addressing for s in order_stages]
        in_plan = set(order)
        upstream = {s.addressing: {u.addressing for u in nx.descendants(graph, s)} & in_plan for s in order_stages}
        cores = {s.addressing: _claim(s) for s in order_stages}
        with repo.lock:
            changed = set(order) if force else {s.addressing for s in order_stages if s.changed()}
    return Plan(order, upstream, cores, changed)


def log_path(log_dir: Path, stage: str) -> Path:
    return log_dir / f"{stage.replace('/', '_')}.log"


def _launcher(root: Path, dvc_args: list[str], log_dir: Path) -> Callable[[str], subprocess.Popen]:
    dvc = [sys.executable, "-m", "dvc"]
    # The stages' commands say `python -m stages.<name>`: this interpreter's folder goes first
    # on PATH so they run in the same environment (as `make demo` arranges for `dvc repro`).
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

    def launch(stage: str) -> subprocess.Popen:
        with log_path(log_dir, stage).open("w") as log:
            return subprocess.Popen([*dvc, "--wait-for-lock", "repro", "--single-item", *dvc_args, stage],
                                    cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)

    return launch


def order_lock_file(root: Path, order: list[str]) -> None:
    """Put dvc.lock's stages in ``order`` (dvc repro's), with DVC's own YAML round trip."""
    from dvc.utils.serialize import modify_yaml

    path = root / "dvc.lock"
    with modify_yaml(str(path)) as data:
        stages = data.get("stages", {})
        rank = {name: i for i, name in enumerate(order)}
        names = sorted(stages, key=lambda n: rank.get(n, len(rank)))
        if names != list(stages):
            data["stages"] = {n: stages[n] for n in names}


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mazesearch.repro", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="stages (and everything upstream); default: all")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="cores to fill (default: all)")
    parser.add_argument("-f", "--force", action="store_true", help="rerun every planned stage")
    parser.add_argument("--downstream", action="store_true",
                        help="the targets and everything below them instead of above (as dvc repro --downstream)")
    parser.add_argument("-s", "--single-item", action="store_true",
                        help="only the targets, in dependency order (as dvc repro --single-item)")
    parser.add_argument("--dry", action="store_true", help="print the plan and the cores each stage claims")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    if not (root / "dvc.yaml").is_file():
        print(f"error: no dvc.yaml in {root}: run from the repository root", file=sys.stderr)
        return 2
    lock_existed = (root / "dvc.lock").is_file()
    try:
        plan = plan_from_repo(root, args.targets, args.force, args.downstream, args.single_item)
    except Exception as exc:  # DVC's errors name the bad target or the broken dvc.yaml
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    if args.dry:
        for stage in plan.order:
            mark = "changed" if stage in plan.changed else "up to date unless upstream changes"
            print(f"{stage}  cores={plan.cores[stage]}  {mark}")
        return 0
    log_dir = root / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    outcome = schedule(plan, args.jobs, _launcher(root, ["-f"] if args.force else [], log_dir),
                       report=lambda line: print(line, flush=True))
    if outcome.failed is not None:
        log = log_path(log_dir, outcome.failed)
        print(_tail(log), file=sys.stderr)
        print(f"error: stage {outcome.failed} failed (exit {outcome.returncode}); its log: {log}", file=sys.stderr)
        return 1
    if not lock_existed and (root / "dvc.lock").is_file():
        order_lock_file(root, plan.order)
    busy = sum(outcome.seconds.values())
    wall = time.monotonic() - began
    print(f"{len(outcome.launched)} of {len(plan.order)} stages launched in {wall:.0f} s "
          f"({busy:.0f} s of stage time, {args.jobs} cores)" if outcome.launched
          else "Data and pipelines are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
