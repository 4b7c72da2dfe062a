"""The params.yaml schema: one pydantic model per section, every default in one place.

Unknown keys are refused (``extra="forbid"``); cross-section checks (a suite's dataset exists,
report.suites are evaluated, ...) live in :class:`Params`. Loading and the one-line error are in
:mod:`mazesearch.params.load`; the every-key-explicit tooling in :mod:`mazesearch.params.explicit`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    # bf16 autocast of the forward pass; auto: where the device multiplies bf16 natively (CUDA with
    # bf16, CPUs with AMX / AVX512-BF16), since elsewhere it is emulated and several times slower
    bf16: bool | Literal["auto"] = False
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
    # sample-efficiency levers (issue 26; mazesearch/model/objectives.py), off by default
    decision_weight: float = Field(default=1.0, gt=0.0)  # loss weight of moves out of a decision cell
    position_ids: Literal["contiguous", "random"] = "contiguous"  # random: sorted sample of [0, max_position)
    max_position: int | None = Field(default=None, gt=0)  # None: model n_ctx
    curriculum_epochs: int = Field(default=0, ge=0)  # epochs ordered small -> large maze (prompt length)
    lookahead: int = Field(default=0, ge=0, le=8)  # auxiliary heads: the path token 2..k+1 ahead
    lookahead_weight: float = Field(default=0.5, ge=0.0)  # their loss weight

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


class DeviceSpec(_Strict):
    """Where a stage runs the model: ``device`` and torch's CPU ``num_threads``."""

    device: Literal["auto", "cpu", "cuda"] = "cpu"
    num_threads: int = Field(default=1, ge=1)  # torch CPU threads


class ControlledRunSpec(DeviceSpec):
    """A stage that also reads the random-init control (mazesearch.interp.run_inputs.control_model)."""

    control_seed: int = Field(default=12345, ge=0)  # random-init control model


class _FirstMazes(_Strict):
    dataset: str = "probe"
    n_mazes: int = Field(default=256, gt=0)  # first n mazes of the dataset
    batch_size: int = Field(default=128, gt=0)  # mazes per forward pass


class ModelRunSpec(ControlledRunSpec, _FirstMazes):
    """What a stage that runs the trained model on the first mazes of a dataset reads: the rows
    (dataset, n_mazes, batch_size; fields first, as in params.yaml), then device, threads and the
    control's seed."""


class ActivationsSpec(ModelRunSpec):
    dataset: str = "test"
    num_threads: int = Field(default=2, ge=1)  # torch CPU threads
    n_mazes: int = Field(default=1000, gt=0)
    hooks: list[str] = ["embed", "resid_post"]  # "embed" = hook_embed + hook_pos_embed
    positions: list[Literal["path_start", "path", "target_end"]] = ["path_start", "path", "target_end"]


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


class HeadsSpec(ModelRunSpec):
    """Stage heads: attention-head hypothesis scores (docs/interp.md)."""

    batch_size: int = Field(default=64, gt=0)  # mazes per forward pass
    # num_threads 1: tiny forwards, 1 beats 2 on a busy box
    seed: int = Field(default=0, ge=0)  # bootstrap over mazes (confidence intervals)
    picture_maze: int = Field(default=0, ge=0)  # row of the maze the pictures show
    bottleneck_top: int = Field(default=3, ge=1)  # bottleneck cells per maze (top betweenness), each matched


class GeometrySpec(ModelRunSpec):
    """Stage geometry: embedding geometry, OV/QK circuits, SVD of the weights, residual PCA (docs/interp.md).
    ``dataset``: the mazes whose path positions the residual picture shows."""

    batch_size: int = Field(default=64, gt=0)
    n_permutations: int = Field(default=1000, ge=1)  # cell-label shuffles for the p-values
    seed: int = Field(default=0, ge=0)  # the shuffles' generator
    top_heads: int = Field(default=2, ge=1)  # lattice-adjacency heads (heads/scores.csv) in the headline
    svd_top_k: int = Field(default=3, ge=1)  # top singular directions per weight matrix scored for lattice alignment


class LogitLensSpec(ModelRunSpec):
    """Stage logit_lens: each layer's residual stream decoded at teacher-forced moves (docs/interp.md)."""


class DlaSpec(ModelRunSpec):
    """Stage dla: direct logit attribution at forks (docs/interp.md)."""


class CounterfactualsSpec(_Strict):
    """Stage counterfactuals: minimally edited twins of a dataset's mazes (docs/interp.md)."""

    dataset: str = "probe"
    n_per_kind: int = Field(default=128, gt=0)  # pairs per kind (fewer if the mazes run out)
    seed: int = Field(default=0, ge=0)  # order the mazes are tried in, choice among valid edits


class PathSpec(_Strict):
    """One path for path patching: a sender ("edit" = the edited token positions, or a head LxHy)
    read by its receiver heads alone (mazesearch.interp.path_patching)."""

    kind: Literal["target_move", "wall_move"]
    sender: str = Field(pattern=r"^(edit|L\d+H\d+)$")
    receivers: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _heads(self) -> "PathSpec":
        bad = [r for r in self.receivers if not re.fullmatch(r"L\d+H\d+", r)]
        if bad:
            raise ValueError(f"receivers must be heads LxHy, got {bad}")
        return self


def _default_paths() -> list[PathSpec]:
    return [PathSpec(kind="wall_move", sender="L0H1", receivers=["L2H1"]),
            PathSpec(kind="target_move", sender="edit", receivers=["L3H0", "L3H2"])]


class PatchingSpec(ControlledRunSpec):
    """Stage patching: activation and path patching on the aligned counterfactual pairs (docs/interp.md)."""

    n_pairs: int = Field(default=128, gt=0)  # first n pairs of each aligned kind the model gets right
    paths: list[PathSpec] = Field(default_factory=_default_paths)  # the first of a kind is its headline
    path_random: int = Field(default=24, ge=0)  # random paths of the same shape per path (the control)
    path_seed: int = Field(default=0, ge=0)  # seeds the random paths


class SteeringSpec(DeviceSpec):
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
    mean_diff_strengths: list[float] = Field(default=[0.5, 1.0, 2.0, 4.0], min_length=1)  # x ||v|| (1: the mean difference)
    label_free_per_cluster: int = Field(default=8, gt=0)  # steered mazes that name each label-free cluster

    @model_validator(mode="after")
    def _positive_strengths(self) -> "SteeringSpec":
        for key in ("strengths", "mean_diff_strengths"):
            if any(not s > 0 for s in getattr(self, key)):
                raise ValueError(f"steering.{key} must all be > 0, got {getattr(self, key)}")
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
    current cell" is decodable above both controls, by a linear probe and by a small MLP (docs/interp.md).
    The split, C, max_iter (linear) and the MLP's random_state (seed) are probes.*."""

    max_k: int = Field(default=6, ge=1)  # k = 1 .. min(max_k, largest distance in the mazes)
    min_balanced_accuracy: float = Field(default=0.8, gt=0.5, le=1.0)  # trained test score to count
    min_selectivity: float = Field(default=0.1, ge=0.0, lt=1.0)  # ... and its lead over the stronger control
    max_rows: int = Field(default=4000, gt=0)  # rows per fit (subsampled by maze): keeps the stage < 1 min
    mlp_hidden: int = Field(default=32, gt=0)  # hidden ReLU units of the nonlinear (MLP) probe
    mlp_max_iter: int = Field(default=100, gt=0)  # its L-BFGS iterations (few: the stage's cost)
    mlp_max_rows: int = Field(default=1500, gt=0)  # its rows per fit, all sides (subsampled by maze)


CLUSTER_LABELS = ("dist_to_target", "fork", "on_future_path")


class ClustersSpec(_Strict):
    """Stage clusters: per layer, how well path-position residuals cluster by a row label (k-nearest-
    neighbour purity minus chance), beside the random-init and permuted-label controls (docs/interp.md)."""

    # the label of metrics.json and the maps' colour
    headline: Literal[CLUSTER_LABELS] = "dist_to_target"  # type: ignore[valid-type]
    k: int = Field(default=10, ge=1)  # neighbours per row (from other mazes only)
    metric: Literal["cosine", "euclidean"] = "cosine"  # on residuals z-scored per dimension
    max_rows: int = Field(default=3000, ge=2)  # path rows scored (whole mazes, seeded)
    tsne_rows: int = Field(default=600, ge=8)  # rows drawn in maps.png (whole mazes, seeded)
    seed: int = Field(default=0, ge=0)  # row subsample, permuted labels, t-SNE


class ParallelSpec(_Strict):
    """Stage parallel: per layer, per-cell probes of the alternative branches within k moves of the
    current cell (not yet passed), beside the true path ahead and the branches already passed, and
    both controls (docs/interp.md, "Parallel paths")."""

    k: int = Field(default=2, ge=1)  # maze moves: the headline, by_layer.csv, the picture and the shape statistic
    max_k: int = Field(default=2, ge=1)  # details.json holds k = 1 .. max_k (at most the largest distance)
    test_frac: float = Field(default=0.25, gt=0.0, lt=1.0)  # mazes held out to score the probes
    C: float = Field(default=1.0, gt=0.0)  # inverse L2 strength of the logistic probes
    max_iter: int = Field(default=200, gt=0)
    max_rows: int = Field(default=3000, gt=0)  # rows per fit (subsampled by maze): keeps the stage < 30 s
    min_change: float = Field(default=0.02, ge=0.0)  # a rise / drop of the gap this small counts as flat
    seed: int = Field(default=0, ge=0)  # split, subsample, permuted labels

    @model_validator(mode="after")
    def _k_within_max_k(self) -> "ParallelSpec":
        if self.k > self.max_k:
            raise ValueError(f"parallel.k={self.k} exceeds parallel.max_k={self.max_k}")
        return self


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
    clusters: ClustersSpec | None = None
    parallel: ParallelSpec | None = None
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
