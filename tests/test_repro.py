"""mazesearch.repro: the parallel ``dvc repro``.

The scheduler is checked on hand-built DAGs with simulated stages (each takes a given number of
clock ticks), against networkx's reading of the same DAG; the DVC side on a throwaway DVC repo,
against a sequential ``dvc repro`` of a copy of it (same outputs, same ``dvc.lock`` bytes).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from helpers import subprocess_env
from mazesearch.repro import Plan, schedule


class Clock:
    """Simulated time in whole ticks: each of the scheduler's sleeps is one tick."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += 1


class FakeProcess:
    def __init__(self, clock: Clock, duration: float, code: int):
        self.clock, self.end, self.code = clock, clock.now + duration, code

    def poll(self):
        return self.code if self.clock.now >= self.end else None


def run(edges, cores, jobs=2, changed=None, duration=None, fail=()):
    """Schedule a DAG given as (upstream, downstream) edges; returns (outcome, intervals, graph)
    where intervals[s] = (launch time, end time)."""
    graph = nx.DiGraph(edges)
    graph.add_nodes_from(cores)
    order = list(nx.lexicographical_topological_sort(graph))
    plan = Plan(order, {s: set(graph.predecessors(s)) for s in order}, dict(cores),
                set(order) if changed is None else set(changed))
    clock, intervals = Clock(), {}

    def launch(stage):
        seconds = (duration or {}).get(stage, 5)  # ticks
        intervals[stage] = (clock.now, clock.now + seconds)
        return FakeProcess(clock, seconds, 1 if stage in fail else 0)

    outcome = schedule(plan, jobs, launch, clock=clock, sleep=clock.sleep)
    return outcome, intervals, graph


def busy_cores(intervals, cores, t):
    return sum(cores[s] for s, (a, b) in intervals.items() if a <= t < b)


DIAMOND = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "wide"), ("a", "e")]
DIAMOND_CORES = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "wide": 2}


def test_every_stage_starts_after_all_of_its_upstream_has_finished():
    outcome, intervals, graph = run(DIAMOND, DIAMOND_CORES, duration={"b": 10, "c": 3})
    assert sorted(outcome.launched) == sorted(graph.nodes)
    for stage in graph:
        for up in nx.ancestors(graph, stage):  # transitively, by networkx
            assert intervals[up][1] <= intervals[stage][0], (up, stage)


def test_independent_one_core_stages_overlap_and_the_core_budget_holds():
    outcome, intervals, _ = run(DIAMOND, DIAMOND_CORES)
    (b0, b1), (c0, c1) = intervals["b"], intervals["c"]
    assert b0 < c1 and c0 < b1  # b and c ran side by side
    for t in sorted({a for a, _ in intervals.values()}):
        assert busy_cores(intervals, DIAMOND_CORES, t) <= 2, t
    w0, w1 = intervals["wide"]
    assert all(not (a < w1 and w0 < b) for s, (a, b) in intervals.items() if s != "wide")  # alone
    # the whole plan takes less than its stages one after another
    assert max(b for _, b in intervals.values()) < sum(b - a for a, b in intervals.values())


def test_a_wide_stage_never_shares_the_cores_with_a_ready_sibling():
    edges = [("root", "wide"), ("root", "n1"), ("root", "n2"), ("root", "n3")]
    cores = {"root": 1, "wide": 2, "n1": 1, "n2": 1, "n3": 1}
    _, intervals, _ = run(edges, cores, duration={"wide": 10})
    w0, w1 = intervals["wide"]
    assert all(not (a < w1 and w0 < b) for s, (a, b) in intervals.items() if s != "wide")
    n = sorted(intervals[s] for s in ("n1", "n2", "n3"))
    assert any(a < d and c < b for (a, b), (c, d) in zip(n, n[1:]))  # the narrow ones pair up


def test_one_job_runs_the_stages_one_at_a_time():
    _, intervals, _ = run(DIAMOND, DIAMOND_CORES, jobs=1)
    spans = sorted(intervals.values())
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))
    assert len(spans) == len(DIAMOND_CORES)  # the 2-core stage still runs, on the one core


def test_the_stage_with_more_downstream_starts_first():
    # z leads to three stages, y to none: with one core, z goes first though y comes first in
    # the plan's order (lexicographic here).
    edges = [("z", "z1"), ("z1", "z2"), ("z2", "z3"), ("root", "z"), ("root", "y")]
    _, intervals, _ = run(edges, dict.fromkeys(["root", "z", "z1", "z2", "z3", "y"], 1), jobs=1)
    assert intervals["z"][0] < intervals["y"][0]


def test_up_to_date_stages_are_not_launched_unless_something_above_them_is():
    cores = dict.fromkeys(["a", "b", "c", "d", "e", "wide"], 1)
    outcome, intervals, graph = run(DIAMOND, cores, changed={"b"})
    expected = {"b"} | nx.descendants(graph, "b")
    assert set(outcome.launched) == expected == {"b", "d", "wide"}
    outcome, _, _ = run(DIAMOND, cores, changed=set())
    assert outcome.launched == [] and outcome.failed is None


def test_a_failure_stops_new_launches_and_lets_running_stages_finish():
    outcome, intervals, graph = run(DIAMOND, DIAMOND_CORES, fail={"b"}, duration={"c": 15})
    assert outcome.failed == "b" and outcome.returncode == 1
    assert "c" in outcome.seconds and outcome.seconds["c"] >= 15  # waited for, not killed
    assert not ({"d", "wide"} & set(outcome.launched))  # below the failure: never started


def test_downstream_counts_match_networkx():
    graph = nx.DiGraph(DIAMOND)
    order = list(nx.topological_sort(graph))
    plan = Plan(order, {s: set(graph.predecessors(s)) for s in order}, DIAMOND_CORES, set(order))
    assert plan.downstream_counts() == {s: len(nx.descendants(graph, s)) for s in order}


# ---------------------------------------------------------------------------- on a real DVC repo

PIPELINE = """\
stages:
  a:
    cmd: python -c "import pathlib; pathlib.Path('a.txt').write_text('a' + pathlib.Path('seed.txt').read_text())"
    deps: [seed.txt]
    outs: [a.txt]
  b:
    cmd: python -c "import pathlib, time; time.sleep(1); pathlib.Path('b.txt').write_text('b' + pathlib.Path('a.txt').read_text())"
    deps: [a.txt]
    params: [b.num_threads]
    outs: [b.txt]
  c:
    cmd: python -c "import pathlib, time; time.sleep(1); pathlib.Path('c.txt').write_text('c' + pathlib.Path('a.txt').read_text())"
    deps: [a.txt]
    outs: [c.txt]
  d:
    cmd: python -c "import pathlib; pathlib.Path('d.txt').write_text(pathlib.Path('b.txt').read_text() + pathlib.Path('c.txt').read_text())"
    deps: [b.txt, c.txt]
    outs: [d.txt]
"""


def _repo(path: Path) -> Path:
    path.mkdir()
    env = subprocess_env()
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=path, check=True, env=env)
    (path / "dvc.yaml").write_text(PIPELINE)
    (path / "params.yaml").write_text("b:\n  num_threads: 2\n")
    (path / "seed.txt").write_text("1")
    return path


def _parallel(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mazesearch.repro", *args], cwd=repo, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def test_a_parallel_repro_equals_dvc_repro_and_leaves_nothing_to_do(tmp_path):
    parallel = _repo(tmp_path / "parallel")
    sequential = tmp_path / "sequential"
    shutil.copytree(parallel, sequential)
    dry = _parallel(parallel, "--dry")
    assert dry.returncode == 0 and "b  cores=2" in dry.stdout and "c  cores=1" in dry.stdout
    done = _parallel(parallel, "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 of 4 stages launched" in done.stdout
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=sequential, env=subprocess_env(), check=True)
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "dvc.lock"):
        assert (parallel / name).read_bytes() == (sequential / name).read_bytes(), name
    assert (parallel / "d.txt").read_text() == "ba1ca1"
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], cwd=parallel, env=subprocess_env())
    assert status.returncode == 0  # -q: exit 0 only when nothing changed
    again = _parallel(parallel)
    assert again.returncode == 0 and "up to date" in again.stdout

    # change c's input only: c and d run, a and b are not launched
    (parallel / "dvc.yaml").write_text(PIPELINE.replace("'c' + ", "'C' + "))
    partial = _parallel(parallel)
    assert partial.returncode == 0 and "2 of 4 stages launched" in partial.stdout, partial.stdout
    assert (parallel / "d.txt").read_text() == "ba1Ca1"
    below = _parallel(parallel, "-f", "--downstream", "c")  # c and what is below it, forced
    assert below.returncode == 0 and "2 of 2 stages launched" in below.stdout, below.stdout
    alone = _parallel(parallel, "-f", "-s", "d", "a")  # the targets only, a before d (not adjacent)
    assert alone.returncode == 0 and "2 of 2 stages launched" in alone.stdout, alone.stdout
    lines = alone.stdout.splitlines()
    assert lines.index(next(x for x in lines if "done   a" in x)) < lines.index(next(x for x in lines if "start  d" in x))


def test_a_failing_stage_exits_1_and_names_its_log(tmp_path):
    repo = _repo(tmp_path / "r")
    (repo / "dvc.yaml").write_text(PIPELINE.replace("time.sleep(1); pathlib", "time.sleep(1); 1/0; pathlib", 1))
    done = _parallel(repo)
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr and "error: stage b failed" in done.stderr
    assert not (repo / "d.txt").exists()


@pytest.mark.parametrize("args, message", [(["-j", "0"], "--jobs"), (["nonexistent"], "nonexistent")])
def test_bad_arguments_give_one_error_line_and_exit_2(tmp_path, args, message):
    repo = _repo(tmp_path / "r")
    done = _parallel(repo, *args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr


def test_order_lock_file_puts_the_stages_in_the_given_order_and_keeps_their_entries(tmp_path):
    import yaml

    from mazesearch.repro import order_lock_file

    entries = {name: {"cmd": f"echo {name}", "outs": [{"path": f"{name}.txt", "md5": name * 4}]} for name in "dcab"}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": entries}, sort_keys=False))
    order_lock_file(tmp_path, ["a", "b", "c", "d"])
    after = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert list(after["stages"]) == ["a", "b", "c", "d"] and after["stages"] == entries
    assert list(after) == ["schema", "stages"]
