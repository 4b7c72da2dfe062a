"""End-to-end: `dvc repro` on the tiny profile in a temporary git repo.

Checks that the pipeline runs, that a second `dvc repro` is a no-op (dvc.lock unchanged), that
changing a key marks the stages that read it (and only stages downstream of those) and reruns
them, that editing a library module marks exactly the stages whose code deps cover it, that
deleting checkpoints/ retrains nothing, that `dvc exp run -S` overrides a key of every stage
family, and that a rerun of every stage from scratch gives byte-identical outputs.

Time is the budget here (this file is `make test`'s critical path): a full tiny repro costs
about 5 minutes on a 2-core box, almost all of it imports (torch and TransformerLens in every
analysis stage), so the file runs two (the first, the rerun from scratch), runs the exp run
only up to the stages that read its overrides, and reads the rest from `dvc status`.
"""

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _run(args, cwd, **kw):
    proc = subprocess.run(args, cwd=cwd, env=subprocess_env(cwd), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def _repro(repo, *args):
    out = _run([sys.executable, "-m", "dvc", "repro", *args], repo)
    return set(re.findall(r"Running stage '([^']+)'", out)), out


def _set_param(repo, dotted, value):
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = raw
    for k in parents:
        node = node[k]
    node[last] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _suites(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]["suites"]


def _changed(repo) -> set[str]:
    """Stages `dvc status` calls changed (their own deps, params or outs): what `dvc repro` runs
    first; stages downstream of them follow only if their inputs come out different."""
    import json

    out = _run([sys.executable, "-m", "dvc", "status", "--json"], repo)
    return set(json.loads(out[out.index("{"):out.rindex("}") + 1]))


def _restore_params(repo):
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=repo, capture_output=True, check=True).stdout
    (repo / "params.yaml").write_bytes(committed)


@functools.cache  # per repo: dvc.yaml never changes within this file
def _stage_list(repo) -> frozenset[str]:
    out = _run([sys.executable, "-m", "dvc", "stage", "list", "--names-only"], repo)
    return frozenset(line.strip() for line in out.splitlines() if line.strip())


def _stage_names(repo):
    return set(_stage_list(repo))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("e2e")
    for name in ("mazesearch", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    _run(["git", "init", "-q"], repo)
    _run(["git", "config", "user.email", "e2e@example.com"], repo)
    _run(["git", "config", "user.name", "e2e"], repo)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], repo)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")  # the plot templates
    return repo


def _commit(repo, msg):
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", msg, "--allow-empty"], repo)


def test_repro_runs_everything_then_is_a_noop(repo):
    ran, _ = _repro(repo)
    stages = _stage_names(repo)
    assert ran == stages, f"not run on first repro: {stages - ran}"
    for name in yaml.safe_load((repo / "params.yaml").read_text())["datasets"]:
        assert (repo / "data" / "mazes" / f"{name}.parquet").stat().st_size > 0
        assert (repo / "data" / "tokens" / f"{name}.parquet").stat().st_size > 0
    _commit(repo, "first run")
    lock = (repo / "dvc.lock").read_bytes()
    ran, out = _repro(repo)
    assert ran == set(), out
    assert (repo / "dvc.lock").read_bytes() == lock


def count_metrics(shown: dict) -> int:
    """Values `dvc metrics show` prints: every non-null leaf of every metrics file."""
    def leaves(node):
        if isinstance(node, dict):
            return sum(leaves(v) for v in node.values())
        return 0 if node is None else 1
    return sum(leaves(f.get("data", {})) for rev in shown.values() for f in rev["data"].values())


def metrics_budget(params: dict) -> int:
    """A screenful: data 1 per dataset (duplicates), train 4, evaluation 4 per suite (the model's
    rate and interval, the baseline's rate), probes 4 per probe, dynamics 1 + 2 per probe, heads 1 +
    4 per hypothesis + 2 (bottleneck attention: the best head's ratio beside the random-init one),
    geometry 11, logit_lens 9, dla 9, reach 2 per layer (embeddings + each block: the linear
    probe's k for target and current) + 2 (the MLP probe's largest k), clusters 3 (one label's
    score beside both controls), parallel 3 (the alternatives' score beside the stronger control
    and the true path ahead's), counterfactuals 4, patching 9 per aligned kind (6
    activation patching, 3 path patching: the names are in details.json), steering 6 per kind
    (each method's success beside random, the ceiling) + 2 label-free + 3 for the SAE,
    faithfulness 9. Probes: 4 per probe, less dist_to_target's void permuted selectivity (null)."""
    return (len(params["datasets"]) + 4 + 4 * len(params["evaluate"]["suites"]) + 4 * 6 - 1
            + 1 + 2 * len(params["dynamics"]["probes"])
            + 1 + 4 * 7 + 2 + 11 + 9 + 9  # heads (+ bottleneck); geometry; logit_lens; dla
            + 2 * (params["model"]["n_layers"] + 1) + 2  # reach: target and current per layer; the MLP's largest
            + 3  # clusters: the headline label's trained, random-init and permuted scores
            + 3  # parallel: the alternatives' trained and stronger-control scores, the true path ahead's
            + 4 + 9 * 2 + 6 * 4 + 2 + 3 + 9)  # counterfactuals; patching; steering; faithfulness


def test_the_default_run_shows_at_most_250_metrics():
    """issues 28, 29: `dvc metrics show` on the default params.yaml stays a screenful (≤ 250 numbers)."""
    assert metrics_budget(yaml.safe_load((ROOT / "params.yaml").read_text())) <= 250


def test_metrics_are_headlines_only(repo):
    import json

    shown = json.loads(_run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert 0 < count_metrics(shown) <= metrics_budget(params)


def _encoded_fields(spec) -> set[str]:
    """Every ``field`` an encoding of a Vega-Lite spec reads (layers included)."""
    found = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "field" and isinstance(value, str):
                found.add(value)
            else:
                found |= _encoded_fields(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= _encoded_fields(value)
    return found


def plot_problems(shown: dict) -> list[str]:
    """What is wrong with ``dvc plots show --json``: errors, empty plots, and encodings that read
    a field the plot's data does not have (like the by-layer CSVs once drawn against ``step``)."""
    problems = [f"error: {e}" for e in shown.get("errors") or []]
    for name, entries in shown["data"].items():
        for entry in entries:
            spec = entry["content"]
            rows = spec.get("data", {}).get("values", [])
            if not rows:
                problems.append(f"{name}: no data")
                continue
            have = set().union(*(row.keys() for row in rows))
            have |= {t["as"] for t in spec.get("transform", []) if "as" in t}  # computed in the spec
            missing = _encoded_fields(spec) - have
            if missing:
                problems.append(f"{name}: encodes {sorted(missing)}, data has {sorted(have)}")
    return problems


def test_plots_are_drawn_once_each_with_fields_their_data_has(repo):
    """`dvc plots show` draws exactly the plots dvc.yaml defines at the top level (stages declare
    their plot files as plain outputs, so nothing is drawn twice) and every encoded field exists."""
    import json

    _repro(repo)  # a no-op after the tests above; run alone, this test starts from a fresh repo
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=repo, env=subprocess_env(),
                          capture_output=True, text=True, check=True)
    shown = json.loads(proc.stdout)  # warnings go to stderr
    assert plot_problems(shown) == []
    probes = sorted(p.stem for p in (repo / "reports" / "probes" / "by_layer").glob("*.csv"))
    expected = {"train loss", "validation exact-path rate", "validation loss",
                "exact path per suite, model vs random-at-forks baseline (95% intervals)",
                "exact path vs maze size (95% intervals)", "probe score and exact path vs training step",
                "logit lens, next-cell accuracy per layer (forks, corridors, control, chance)",
                "reach per layer (largest k decodable above control)",
                "clustering per layer, kNN purity minus chance (trained, random-init, permuted labels)",
                "parallel paths per layer, per-cell probes at k moves (alternatives, true path ahead, discarded; both controls)",
                "faithfulness, exact path keeping the top-k heads (patching, random and single-ablation orders)",
                "steering success vs strength (probe, permuted-label probe, random, SAE)",
                "retargeting success vs strength (mean-difference, label-free, permuted, random; the ceiling)",
                *(f"reports/probes/by_layer/{p}.csv" for p in probes)}
    assert len(probes) >= 3 and set(shown["data"]) == expected
    suites = shown["data"]["exact path per suite, model vs random-at-forks baseline (95% intervals)"][0]
    rows = suites["content"]["data"]["values"]
    assert {r["series"] for r in rows} == {"model", "baseline"} and all(
        float(r["lo"]) <= float(r["exact"]) <= float(r["hi"]) for r in rows)
    by_layer = shown["data"][f"reports/probes/by_layer/{probes[0]}.csv"][0]["content"]["data"]["values"]
    assert {"trained", "random_init", "permuted"} <= {v for r in by_layer for v in r.values()}  # both controls


def test_the_report_page_shows_every_stage_and_works_offline(repo):
    """reports/index.html after the tiny run: every section present, the explorer's suites, and
    the page in headless Chromium (tests/browser.py: offline, no errors, images decode, clicks redraw)."""
    from browser import ARTIFACTS, check_page, explorer_doc

    page = (repo / "reports" / "index.html").read_text()
    assert "Not built yet" not in page and "could not read" not in page
    doc = explorer_doc(repo / "reports" / "index.html")
    spec = yaml.safe_load((repo / "params.yaml").read_text())["report"]
    assert [s["name"] for s in doc["suites"]] == spec["suites"]
    assert all(len(s["mazes"]) == spec["mazes_per_suite"] for s in doc["suites"])
    check_page(repo / "reports" / "index.html", ARTIFACTS / "report_e2e.png")


def test_deleting_checkpoints_retrains_nothing(repo):
    assert (repo / "checkpoints" / "train" / "timing.json").exists()  # wall time lives here
    assert not (repo / "checkpoints" / "train" / "state.pt").exists()  # resume state: killed runs only
    shutil.rmtree(repo / "checkpoints")
    status = _run([sys.executable, "-m", "dvc", "status"], repo)
    assert "up to date" in status.lower(), status
    ran, out = _repro(repo)
    assert ran == set(), out


def _deps_cover(repo, path: str) -> set[str]:
    """Stages whose dvc.yaml deps list `path` or a directory above it."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name for name, st in lock.items()
            if any(path == d["path"] or path.startswith(d["path"].rstrip("/") + "/") for d in st.get("deps", []))}


def test_editing_a_library_module_reruns_exactly_its_stages(repo):
    """Code deps are subpackages: a comment in evaluation/metrics.py marks as changed exactly the
    stages that import mazesearch.evaluation (every evaluate@<suite>, eval_summary, ...) and no data
    stage. `dvc status` reads what `dvc repro` would rerun first, without running it; the forced
    rerun in the exp-run test below shows that reruns come out byte-identical."""
    target = "mazesearch/evaluation/metrics.py"
    expected = _deps_cover(repo, target)
    assert {s for s in _stage_names(repo) if s.startswith("evaluate@")} <= expected
    assert not expected & {"train", "activations", "probes"} and not any(s.startswith(("generate", "tokenize")) for s in expected)
    path = repo / target
    original = path.read_text()
    path.write_text(original + "\n# an edit that changes no behaviour\n")
    try:
        assert _changed(repo) == expected
    finally:
        path.write_text(original)
    assert _changed(repo) == set()


@functools.cache
def _edges(repo) -> tuple[tuple[str, str], ...]:
    dot = _run([sys.executable, "-m", "dvc", "dag", "--dot"], repo)
    return tuple(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))


def _downstream(repo, changed_stages):
    """Stages reachable from `changed_stages` in the DAG (inclusive), via `dvc dag --dot`."""
    edges = _edges(repo)
    reach, frontier = set(changed_stages), list(changed_stages)
    while frontier:
        s = frontier.pop()
        for a, b in edges:
            if a == s and b not in reach:
                reach.add(b)
                frontier.append(b)
    return reach


@pytest.mark.parametrize(
    "key,value,readers",
    [
        ("tokenizer.seed", 7, ("tokenize@",)),
        ("datasets.test.seed", 33, ("generate@test",)),
        ("train.lr", 0.002, ("train",)),
        ("evaluate.baseline_seed", 1, ("evaluate@",)),
        ("activations.control_seed", 99, ("activations", "dynamics")),
        ("probes.C", 0.5, ("probes", "dynamics", "reach", "steering")),  # they fit probes alike
    ],
)
def test_changing_a_key_marks_only_its_readers(repo, key, value, readers):
    """`readers` name (by prefix) stages that read `key` directly: `dvc status` must call them
    changed, and nothing outside the stages downstream of them (validate reads every key). The
    record alone: the test below runs a change through `dvc repro`."""
    must_run = {s for s in _stage_names(repo) if s.startswith(readers)}
    _set_param(repo, key, value)
    try:
        changed = _changed(repo)
    finally:
        _restore_params(repo)
    assert must_run | {"validate"} <= changed
    assert changed <= _downstream(repo, must_run) | {"validate"}, changed - _downstream(repo, must_run)
    if key.startswith(("tokenizer.", "train.")):
        assert not any(s.startswith(("generate", "vocab")) for s in changed)
    if key.startswith("probes."):  # exactly the stages that fit probes
        assert changed == {"validate", "probes", "dynamics", "reach", "steering"}, changed
    # (the restore is checked by the next case: a stale key would widen its `changed`)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("evaluate.n_pictures", 3, {"validate", "pictures", "report"}),  # no rollout reruns
    ],
)
def test_changing_a_key_reruns_only_downstream(repo, key, value, expected):
    """A change run through `dvc repro` (the cheapest: pictures only): its readers rerun,
    validate's output comes out byte-identical so nothing else downstream of it reruns, and a
    second repro is a no-op."""
    _set_param(repo, key, value)
    ran, out = _repro(repo)
    assert ran == expected, out
    if key == "evaluate.n_pictures":
        assert len(list((repo / "reports" / "eval" / "pictures").glob("*.png"))) == len(_suites(repo))
    _commit(repo, f"change {key}")
    ran, out = _repro(repo)
    assert ran == set(), out


def test_dvc_exp_run_overrides_a_key_of_every_family_and_a_rerun_gives_identical_bytes(repo):
    """`dvc exp run -S section.key=value` works for keys that only had schema defaults before
    (every key is written out in params.yaml); `dvc exp show` lists the values it used and `dvc
    metrics diff` the per-suite changes. The exp run goes up to `pictures` and `probes`, the
    stages that read the last overrides (the analysis stages after them only cost time). Then,
    back at the committed params, `dvc repro --no-run-cache` reruns from scratch every stage the
    overrides touched, and the rest are forced: dvc.lock records every output's md5, so an
    unchanged dvc.lock means every stage's outputs came out byte-identical (same machine)."""
    import json

    lock = (repo / "dvc.lock").read_bytes()
    files = sorted((repo / "data").rglob("*.parquet")) + [repo / "data" / "vocab.json"]
    before = {f: f.read_bytes() for f in files}
    overrides = {
        "datasets.train.seed": 5,  # every generate@ stage lists datasets.train
        "tokenizer.edge_order": "sorted",
        "model.d_mlp": 48,
        "train.weight_decay": 0.05,
        "evaluate.n_pictures": 2,
        "activations.control_seed": 7,
        "probes.C": 0.25,
    }
    targets = ["pictures", "probes"]  # readers of evaluate.n_pictures and probes.C
    args = [a for k, v in overrides.items() for a in ("-S", f"{k}={v}")]
    out = _run([sys.executable, "-m", "dvc", "exp", "run", *args, *targets], repo)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert {"train", "activations", *targets} <= ran and {s for s in ran if s.startswith("generate@")}, out
    assert not ran & {"heads", "steering", "report"}, out  # downstream of the targets: not run

    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo))
    text = json.dumps(shown)
    for key, value in overrides.items():
        assert key.split(".")[-1] in text, key
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in overrides.items():
        node = params
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    # a retrained model: `dvc metrics diff` shows per-suite changes against the commit
    diff = _run([sys.executable, "-m", "dvc", "metrics", "diff", "--all"], repo)
    assert "reports/eval/suites/test.json" in diff and "model_exact" in diff, diff
    assert "reports/train/metrics.json" in diff, diff
    # README's readable `dvc exp show`: only the kept columns (one experiment, model.d_mlp changed)
    readme = (ROOT / "README.md").read_text()
    keep = re.search(r"--keep '([^']+)'", readme).group(1)
    table = _run([sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--drop", ".*", "--md", "--keep", keep], repo)
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header[0] == "Experiment" and "model.positional" in header and "train.seed" in header, table
    assert {"reports/eval/suites/test.json:model_exact"} <= set(header) and len(header) <= 6, table

    _restore_params(repo)
    shutil.rmtree(repo / "checkpoints", ignore_errors=True)
    reran, out = _repro(repo, "--no-run-cache")
    assert ran <= reran, ran - reran
    rest = sorted(_stage_names(repo) - reran)  # vocab, and any stage whose inputs came out unchanged
    assert "vocab" in rest and "train" not in rest and "steering" in rest
    _run([sys.executable, "-m", "dvc", "repro", "-f", "-s", *rest], repo)
    for f in files:
        assert f.read_bytes() == before[f], f"{f} changed on an identical rerun"
    assert (repo / "dvc.lock").read_bytes() == lock
    ran, out = _repro(repo)
    assert ran == set(), out


def _outputs(repo) -> dict[Path, bytes]:
    return {p: p.read_bytes() for d in ("data", "models", "reports") for p in sorted((repo / d).rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("command", ["exp run", "repro"])
def test_a_bad_value_stops_the_run_before_any_output_is_touched(repo, command):
    """Stage validate comes first: `dvc exp run -S datasets.train.grid_n=1` (or a bad edit then
    `dvc repro`) fails with the one error line and every output, cached or not, is untouched."""
    _repro(repo)  # a complete run, committed (run alone, this test starts from a fresh repo)
    _commit(repo, "before a bad value")
    before = _outputs(repo)
    assert len(before) > 50 and (repo / "data" / "params_valid.txt").exists()
    env = subprocess_env(repo)
    if command == "exp run":
        args = [sys.executable, "-m", "dvc", "exp", "run", "-S", "datasets.train.grid_n=1"]
    else:
        _set_param(repo, "datasets.train.grid_n", 1)
        args = [sys.executable, "-m", "dvc", "repro"]
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "error: " in text and "datasets.train.grid_n" in text, text
    assert re.findall(r"Running stage '([^']+)'", text) == ["validate"], text
    after = _outputs(repo)
    assert sorted(after) == sorted(before), f"missing: {sorted(set(before) - set(after))}"
    assert [p for p in before if after[p] != before[p]] == []
    # the README's recovery. Not `git checkout HEAD -- params.yaml`: after a failed `dvc exp run`
    # git's index can call the edited file unchanged, and checkout then skips it
    _restore_params(repo)
    state = _run(["git", "log", "--oneline", "-3"], repo) + _run(["git", "status", "--short"], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["datasets"]["train"]["grid_n"] != 1, state + text
    ran, out = _repro(repo)
    assert ran == set(), out
