"""The one schema for params.yaml.

Stages call :func:`load_params`; library code never reads params.yaml. Any unknown key, wrong
type or impossible value stops the stage with one message naming the key (exit code 2) before
anything is written.

Defaults live here only, but the shipped params files write every key out (so ``dvc params
diff`` shows each value a run used and ``dvc exp run -S key=value`` can set any of them):
:func:`missing_keys` lists the keys a params mapping leaves to a default, and

    python -m mazesearch.params --check params.yaml   # list them, exit 2 if any
    python -m mazesearch.params --fill params.yaml    # write their defaults in (keeps comments)
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

GENERATORS = (
    "dfs", "wilson", "kruskal", "recursive_division",
    "percolation", "dfs_percolation", "open_field",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatasetSpec(_Strict):
    """One maze dataset: ``data/mazes/<name>.parquet``."""

    generator: Literal[GENERATORS]  # type: ignore[valid-type]
    grid_n: int = Field(ge=2, le=64)
    n_mazes: int = Field(gt=0)
    seed: int = Field(ge=0)
    # dfs only
    forkless: bool = False  # "hallway" mazes: the DFS never branches
    max_cells: int | None = Field(default=None, ge=2)  # stop carving after this many cells
    max_cells_frac: float | None = Field(default=None, gt=0.0, le=1.0)
    max_depth: int | None = Field(default=None, ge=1)  # DFS stack depth limit
    # percolation, dfs_percolation: probability that each lattice edge is (additionally) open
    p: float | None = Field(default=None, ge=0.0, le=1.0)
    # open_field: k obstacle blocks of side obstacle_size (cells removed from the field)
    n_obstacles: int = Field(default=0, ge=0)
    obstacle_size: int = Field(default=1, ge=1)
    # endpoints
    origin_at_dead_end: bool = False
    target_at_dead_end: bool = False
    min_manhattan: int = Field(default=0, ge=0)
    min_path_len: int = Field(default=1, ge=1)
    # coverage: carve k x k mazes (k from sizes) at an offset inside the grid_n lattice
    sizes: list[int] | None = None
    placement: Literal["random", "origin"] = "random"

    @model_validator(mode="after")
    def _options_fit_generator(self) -> "DatasetSpec":
        g = self.generator
        if self.sizes is not None:
            if not self.sizes or min(self.sizes) < 2 or max(self.sizes) > self.grid_n:
                raise ValueError(f"sizes must be a non-empty list of ints in 2..grid_n={self.grid_n}, got {self.sizes}")
        dfs_only = {"forkless": self.forkless, "max_cells": self.max_cells,
                    "max_cells_frac": self.max_cells_frac, "max_depth": self.max_depth}
        for key, value in dfs_only.items():
            if value not in (None, False) and g != "dfs":
                raise ValueError(f"{key} applies only to generator dfs (got generator {g})")
        if self.max_cells is not None and self.max_cells_frac is not None:
            raise ValueError("give max_cells or max_cells_frac, not both")
        if self.max_cells is not None and self.max_cells > self.grid_n**2:
            raise ValueError(f"max_cells={self.max_cells} exceeds grid_n**2={self.grid_n**2}")
        if g in ("percolation", "dfs_percolation"):
            if self.p is None:
                raise ValueError(f"generator {g} needs p (probability an edge is open)")
        elif self.p is not None:
            raise ValueError(f"p applies only to percolation and dfs_percolation (got {g})")
        if g != "open_field" and (self.n_obstacles or self.obstacle_size != 1):
            raise ValueError(f"n_obstacles/obstacle_size apply only to open_field (got {g})")
        if self.n_obstacles * self.obstacle_size**2 > self.grid_n**2 - 2:
            raise ValueError("obstacles would cover the whole grid")
        if self.min_manhattan > 2 * (self.grid_n - 1):
            raise ValueError(f"min_manhattan={self.min_manhattan} is impossible on a {self.grid_n}x{self.grid_n} grid")
        if self.min_path_len > self.grid_n**2 - 1:
            raise ValueError(f"min_path_len={self.min_path_len} is impossible on a {self.grid_n}x{self.grid_n} grid")
        return self


class TokenizerSpec(_Strict):
    max_grid_n: int = Field(ge=2, le=64)  # fixes the vocabulary
    coord: Literal["unary", "pair"] = "unary"  # "(r,c)" as one token, or "(r," ",c)" as two
    edges: Literal["adjlist", "walls"] = "adjlist"  # list connections, or the dual: walls
    edge_order: Literal["shuffled", "sorted"] = "shuffled"
    seed: int = Field(default=0, ge=0)


class TokenizerOverride(_Strict):
    coord: Literal["unary", "pair"] | None = None
    edges: Literal["adjlist", "walls"] | None = None
    edge_order: Literal["shuffled", "sorted"] | None = None
    seed: int | None = Field(default=None, ge=0)


class ModelSpec(_Strict):
    d_model: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    d_head: int = Field(gt=0)
    d_mlp: int = Field(gt=0)
    act_fn: Literal["gelu", "relu", "gelu_new", "silu"] = "gelu"
    normalization: Literal["LN", "none"] = "LN"
    positional: Literal["learned", "rotary", "none"] = "rotary"
    n_ctx: int | None = Field(default=None, gt=0)  # None: derived from the training tokens
    seed: int = Field(default=0, ge=0)


class TrainSpec(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False  # bf16 autocast of the forward pass (CUDA, or CPUs with native bf16)
    batch_size: int = Field(gt=0)
    max_steps: int = Field(gt=0)
    lr: float = Field(gt=0.0)
    min_lr_frac: float = Field(default=0.1, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.1, ge=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.99, ge=0.0, lt=1.0)
    grad_clip: float = Field(default=1.0, gt=0.0)
    loss_on: Literal["path", "all"] = "path"
    eval_every: int = Field(default=200, gt=0)
    eval_batches: int = Field(default=8, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    num_threads: int = Field(default=2, ge=1)  # torch CPU threads (results may depend on it)
    seed: int = Field(default=0, ge=0)
    length_window: int = Field(default=1, ge=1)  # batches per length-sorted window (1: no bucketing)
    n_snapshots: int = Field(default=0, ge=0)  # evenly spaced weight snapshots for stage dynamics

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainSpec":
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be < max_steps={self.max_steps}")
        return self


class SuiteSpec(_Strict):
    dataset: str
    tokenizer: TokenizerOverride = TokenizerOverride()
    n_mazes: int | None = Field(default=None, gt=0)  # evaluate only the first n mazes


class EvaluateSpec(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=2, ge=1)  # torch CPU threads
    batch_size: int = Field(default=256, gt=0)
    n_pictures: int = Field(default=16, ge=1)
    baseline_seed: int = Field(default=0, ge=0)
    size_suites: list[str] = []  # suites drawn as exact-path rate vs grid size (eval_summary)
    suites: dict[str, SuiteSpec]

    @model_validator(mode="after")
    def _size_suites_exist(self) -> "EvaluateSpec":
        unknown = [s for s in self.size_suites if s not in self.suites]
        if unknown:
            raise ValueError(f"size_suites {unknown} are not in evaluate.suites")
        return self


class ActivationsSpec(_Strict):
    dataset: str = "test"
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=2, ge=1)  # torch CPU threads
    n_mazes: int = Field(default=1000, gt=0)
    batch_size: int = Field(default=128, gt=0)
    hooks: list[str] = ["embed", "resid_post"]  # "embed" = hook_embed + hook_pos_embed
    positions: list[Literal["path_start", "path", "target_end"]] = ["path_start", "path", "target_end"]
    control_seed: int = Field(default=12345, ge=0)  # random-init control model


class ProbesSpec(_Strict):
    test_frac: float = Field(default=0.25, gt=0.0, lt=1.0)  # mazes held out to score the probes
    val_frac: float = Field(default=0.2, gt=0.0, lt=1.0)  # of the rest: picks best_layer
    C: float = Field(default=1.0, gt=0.0)  # inverse L2 strength of the logistic probes
    ridge_alpha: float = Field(default=1.0, gt=0.0)
    max_iter: int = Field(default=200, gt=0)
    max_rows: int = Field(default=20000, gt=0)  # rows per probe fit (subsampled by maze)
    seed: int = Field(default=0, ge=0)


class DynamicsSpec(_Strict):
    n_mazes: int = Field(default=300, gt=0)  # mazes of activations.dataset per snapshot
    probes: list[Literal["walls", "target", "future_path", "on_solution", "next_move", "dist_to_target"]] = [
        "walls", "target", "future_path"]


class HeadsSpec(_Strict):
    """Stage heads: attention-head hypothesis scores (docs/interp.md)."""

    dataset: str = "probe"
    n_mazes: int = Field(default=256, gt=0)  # first n mazes of the dataset
    batch_size: int = Field(default=64, gt=0)  # mazes per forward pass
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)  # torch CPU threads (tiny forwards: 1 beats 2 on a busy box)
    control_seed: int = Field(default=12345, ge=0)  # random-init control model
    seed: int = Field(default=0, ge=0)  # bootstrap over mazes (confidence intervals)
    picture_maze: int = Field(default=0, ge=0)  # row of the maze the pictures show


class GeometrySpec(_Strict):
    """Stage geometry: embedding geometry, OV/QK circuits, residual PCA (docs/interp.md)."""

    dataset: str = "probe"  # mazes whose path positions the residual picture shows
    n_mazes: int = Field(default=256, gt=0)
    batch_size: int = Field(default=64, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)
    control_seed: int = Field(default=12345, ge=0)  # random-init control model
    n_permutations: int = Field(default=1000, ge=1)  # cell-label shuffles for the p-values
    seed: int = Field(default=0, ge=0)  # the shuffles' generator
    top_heads: int = Field(default=2, ge=1)  # lattice-adjacency heads (heads/scores.csv) in the headline


class ModelRunSpec(_Strict):
    """What a stage that runs the trained model on the first mazes of a dataset reads."""

    dataset: str = "probe"
    n_mazes: int = Field(default=256, gt=0)  # first n mazes of the dataset
    batch_size: int = Field(default=128, gt=0)  # mazes per forward pass
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)  # torch CPU threads
    control_seed: int = Field(default=12345, ge=0)  # random-init control model


class LogitLensSpec(ModelRunSpec):
    """Stage logit_lens: each layer's residual stream decoded at teacher-forced moves (docs/interp.md)."""


class DlaSpec(ModelRunSpec):
    """Stage dla: direct logit attribution at forks (docs/interp.md)."""


class CounterfactualsSpec(_Strict):
    """Stage counterfactuals: minimally edited twins of a dataset's mazes (docs/interp.md)."""

    dataset: str = "probe"
    n_per_kind: int = Field(default=128, gt=0)  # pairs per kind (fewer if the mazes run out)
    seed: int = Field(default=0, ge=0)  # order the mazes are tried in, choice among valid edits


class PatchingSpec(_Strict):
    """Stage patching: activation patching on the aligned counterfactual pairs (docs/interp.md)."""

    n_pairs: int = Field(default=128, gt=0)  # first n pairs of each aligned kind the model gets right
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)
    control_seed: int = Field(default=12345, ge=0)  # random-init control model


class SteeringSpec(_Strict):
    """Stage steering: add probe / SAE directions to the residual stream, roll out (docs/interp.md)."""

    n_pairs: int = Field(default=128, gt=0)  # first n pairs of each kind
    strengths: list[float] = Field(default=[0.1, 0.25, 0.5, 1.0, 2.0], min_length=1)  # x the mean residual norm
    positions: Literal["path", "all"] = "path"  # steer from <PATH_START> on (where probes fit), or everywhere
    n_random: int = Field(default=3, ge=1)  # random directions per pair (same norm)
    seed: int = Field(default=0, ge=0)  # random directions, permuted labels, SAE init and batches
    batch_size: int = Field(default=128, gt=0)  # rollouts per forward pass
    sae_features: int = Field(default=256, gt=0)  # SAE dictionary size
    sae_k: int = Field(default=8, gt=0)  # active features per row (TopK)
    sae_steps: int = Field(default=3000, gt=0)
    sae_batch_size: int = Field(default=256, gt=0)
    sae_lr: float = Field(default=1e-3, gt=0.0)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _positive_strengths(self) -> "SteeringSpec":
        if any(not s > 0 for s in self.strengths):
            raise ValueError(f"steering.strengths must all be > 0, got {self.strengths}")
        if self.sae_k > self.sae_features:
            raise ValueError(f"steering.sae_k={self.sae_k} exceeds steering.sae_features={self.sae_features}")
        return self


class FaithfulnessSpec(ModelRunSpec):
    """Stage faithfulness: mean-ablate every head but the top k by patching (docs/interp.md)."""


class ReportSpec(ModelRunSpec):
    """Stage report: reports/index.html from every stage's outputs, with a maze explorer (docs/report.md).
    ``dataset`` / ``n_mazes``: the teacher-forced mazes the explorer's future-path probes are fitted on."""

    dataset: str = "val"
    n_mazes: int = Field(default=400, ge=8)
    suites: list[str] = Field(default_factory=lambda: ["test"], min_length=1)  # evaluate suites in the explorer
    mazes_per_suite: int = Field(default=4, ge=1, le=64)  # failures first (up to half), then successes
    probe_C: float = Field(default=1.0, gt=0.0)  # inverse L2 strength of the explorer's probes
    probe_max_iter: int = Field(default=200, gt=0)
    probe_test_frac: float = Field(default=0.25, gt=0.0, lt=1.0)  # mazes held out to score them
    seed: int = Field(default=0, ge=0)  # the held-out split


class ReachSpec(_Strict):
    """Stage reach: per layer, the largest k at which "cell within maze distance k of the target /
    current cell" is linearly decodable above both controls (docs/interp.md). The split, C and
    max_iter are probes.*."""

    max_k: int = Field(default=6, ge=1)  # k = 1 .. min(max_k, largest distance in the mazes)
    min_balanced_accuracy: float = Field(default=0.8, gt=0.5, le=1.0)  # trained test score to count
    min_selectivity: float = Field(default=0.1, ge=0.0, lt=1.0)  # ... and its lead over the stronger control
    max_rows: int = Field(default=4000, gt=0)  # rows per fit (subsampled by maze): keeps the stage < 1 min


class Params(_Strict):
    datasets: dict[str, DatasetSpec]
    tokenizer: TokenizerSpec
    model: ModelSpec | None = None
    train: TrainSpec | None = None
    evaluate: EvaluateSpec | None = None
    activations: ActivationsSpec | None = None
    probes: ProbesSpec | None = None
    dynamics: DynamicsSpec | None = None
    heads: HeadsSpec | None = None
    geometry: GeometrySpec | None = None
    logit_lens: LogitLensSpec | None = None
    dla: DlaSpec | None = None
    reach: ReachSpec | None = None
    counterfactuals: CounterfactualsSpec | None = None
    patching: PatchingSpec | None = None
    steering: SteeringSpec | None = None
    faithfulness: FaithfulnessSpec | None = None
    report: ReportSpec | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        for name in ("train", "val"):
            if name not in self.datasets:
                raise ValueError(f"datasets.{name} is required (the training and validation sets)")
        for name, spec in self.datasets.items():
            if not name.replace("_", "").isalnum():
                raise ValueError(f"dataset name {name!r} must be letters, digits and _")
            if spec.grid_n > self.tokenizer.max_grid_n:
                raise ValueError(
                    f"datasets.{name}.grid_n={spec.grid_n} exceeds tokenizer.max_grid_n="
                    f"{self.tokenizer.max_grid_n}"
                )
        if self.evaluate is not None:
            for suite, s in self.evaluate.suites.items():
                if s.dataset not in self.datasets:
                    raise ValueError(f"evaluate.suites.{suite}.dataset={s.dataset!r} is not in datasets")
        if self.activations is not None and self.activations.dataset not in self.datasets:
            raise ValueError(f"activations.dataset={self.activations.dataset!r} is not in datasets")
        for section in ("heads", "geometry", "logit_lens", "dla", "counterfactuals", "faithfulness", "report"):
            spec = getattr(self, section)
            if spec is not None and spec.dataset not in self.datasets:
                raise ValueError(f"{section}.dataset={spec.dataset!r} is not in datasets")
        if self.report is not None:
            suites = self.evaluate.suites if self.evaluate is not None else {}
            for suite in self.report.suites:
                if suite not in suites:
                    raise ValueError(f"report.suites: {suite!r} is not in evaluate.suites")
        return self


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


# --- every key explicit -------------------------------------------------------------------------

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
