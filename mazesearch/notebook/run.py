"""One handle on a finished run for notebooks: model, vocabulary, mazes, tokens, predictions.

``run = load_run(".")`` reads what ``dvc repro`` wrote under a run directory and gives:

* ``run.model``: the TransformerLens bridge (mazesearch.interp.bridge) with a tokenizer, so
  ``to_str_tokens``, ``to_string``, ``to_tokens(text)`` and ``generate`` work on maze text;
* ``run.roles(i)``: what every token position of maze i is (cell, listed edge, path step);
* ``run.cell_attention`` / ``run.draw_attention`` / ``run.draw_probe_map``: values on the grid;
* where the report stops: ``run.failures()`` (the mazes the model fails, from stage evaluate's
  predictions), ``run.first_error(i)`` (its first wrong decision), ``own=True`` on the sequence
  methods (the prompt plus the model's own greedy continuation), ``run.lens(i)`` (the logit lens,
  TransformerLens' ``accumulated_resid``) and ``run.results(stage)`` (a stage's JSON outputs).

Why a separate package: it reads files of several stages and imports every layer, and no stage
imports it, so editing it reruns nothing in the pipeline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mazesearch.data.decode import decode_path
from mazesearch.data.maze import MazeBatch, n_edges, read_mazes
from mazesearch.data.tokens import PAD, PATH_END, TokenBatch, TokenizerOptions, Vocab, encode, read_tokens, to_text
from mazesearch.evaluation.metrics import distances_to_target
from mazesearch.model.gpt import with_context
from mazesearch.interp.bridge import to_bridge
from mazesearch.interp.lens import lens_hooks
from mazesearch.io import InputError, read_json
from mazesearch.model.gpt import GPT, load_gpt
from mazesearch.notebook import draw
from mazesearch.notebook.failures import FirstError, failure_table, first_wrong_step
from mazesearch.notebook.results import StageResults, stage_results
from mazesearch.notebook.roles import ROLES, cell_mass, token_roles
from mazesearch.notebook.tokenizer import attach_tokenizer


def _need(root: Path, rel: str, stage: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; build it with `dvc repro {stage}` in {root.resolve()} "
                                f"(or fetch it with `dvc pull {rel}`)")
    return path


def _read_predictions(root: Path, suite: str, mazes: MazeBatch, dataset: str) -> pd.DataFrame:
    """data/predictions/<suite>.parquet, checked to hold mazes of ``dataset`` only."""
    pred_path = _need(root, f"data/predictions/{suite}.parquet", f"evaluate@{suite}")
    predictions = pd.read_parquet(pred_path)
    stray = ~np.isin(predictions["maze_id"].to_numpy(np.uint64), mazes.maze_id)
    if stray.any():
        raise InputError(pred_path, f"{int(stray.sum())} of its mazes are not in data/mazes/{dataset}.parquet",
                         f"suite {suite!r} is not on dataset {dataset!r}: pass dataset= or suite=")
    return predictions


def _entry_starts(continuation: np.ndarray, vocab: Vocab, n: int, coord: str) -> list[int]:
    """Offset in ``continuation`` of each path entry's first token (``decode_path``'s entries),
    then of the slot after the last one (where ``<PATH_END>``, ``<PADDING>`` or nothing stands)."""
    starts: list[int] = []
    for t in range(len(continuation)):  # entry k starts where a prefix first decodes to k + 1 entries
        count = len(decode_path(continuation[: t + 1], vocab, n, coord)[0])
        starts += [t] * (count - len(starts))
    stops = np.flatnonzero(np.isin(continuation, [vocab.id(PATH_END), vocab.id(PAD)]))
    return starts + [int(stops[0]) if len(stops) else len(continuation)]


def _details(root: Path, suite: str) -> dict | None:
    """The suite's evaluation details (its dataset and tokenizer options), if written."""
    path = root / "reports" / "eval" / "details" / f"{suite}.json"
    if not path.is_file():
        return None
    doc = read_json(path, "evaluation details", f"re-run `dvc repro evaluate@{suite}`")
    if not (isinstance(doc, dict) and isinstance(doc.get("dataset"), str) and isinstance(doc.get("tokenizer"), dict)):
        raise InputError(path, "has no dataset and tokenizer entries", f"re-run `dvc repro evaluate@{suite}`")
    return doc


@dataclasses.dataclass(eq=False)
class Run:
    """A loaded run (see :func:`load_run`). Maze ``i`` is row i of the dataset's files."""

    root: Path
    dataset: str
    suite: str | None  # whose predictions are loaded; None: none
    model: object  # transformer_lens TransformerBridge, with the maze tokenizer
    gpt: GPT  # the same weights in the hook-free module (fast greedy rollouts)
    vocab: Vocab
    mazes: MazeBatch
    tokens: TokenBatch  # sequence i = maze i
    predictions: pd.DataFrame | None  # data/predictions/<suite>.parquet as written (docs/metrics.md)
    tokenizer_options: TokenizerOptions | None  # the suite's, when its details file says

    def __post_init__(self) -> None:
        ids = np.zeros(0, np.uint64) if self.predictions is None else self.predictions["maze_id"].to_numpy(np.uint64)
        # stage evaluate writes row i for maze i; else match by maze_id (a maze held twice has one prediction)
        self._in_order = self.predictions is not None and np.array_equal(ids, self.mazes.maze_id)
        self._prediction_row = {int(m): r for r, m in enumerate(ids)}
        self._generated: dict[int, np.ndarray] = {}  # generate's continuation per maze (no predictions)
        self._dist: np.ndarray | None = None  # int32 [B, n*n]: BFS distance to each maze's target

    @property
    def grid_n(self) -> int:
        return int(self.mazes.grid_n)

    def __len__(self) -> int:
        return len(self.mazes)

    def __repr__(self) -> str:
        cfg = self.gpt.cfg
        preds = f"predictions of suite {self.suite!r}" if self.suite else "no predictions"
        return (f"Run({str(self.root)!r}: {len(self)} mazes of dataset {self.dataset!r} ({self.grid_n}x{self.grid_n}), "
                f"{preds}; model {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, {cfg.positional})")

    def _index(self, i: int) -> int:
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"maze {i} out of range: the run has {len(self)} mazes of dataset {self.dataset!r}")
        return int(i) % len(self)

    # ------------------------------------------------------------------ tokens

    def _seq(self, i: int, prompt: bool = False, own: bool = False) -> np.ndarray:
        """int64 [T]: the stored sequence, its prompt, or the prompt + the model's continuation."""
        if prompt and own:
            raise ValueError("pass prompt=True (the prompt alone) or own=True (prompt + the model's path), not both")
        i = self._index(i)
        if own:
            return np.concatenate([self.tokens.prompt(i).astype(np.int64), self.continuation(i)])
        return (self.tokens.prompt(i) if prompt else self.tokens.tokens(i)).astype(np.int64)

    def ids(self, i: int, prompt: bool = False, own: bool = False) -> torch.Tensor:
        """Maze i's sequence (teacher-forced: the true path), its prompt (through ``<PATH_START>``)
        or, ``own=True``, the prompt + the model's own :meth:`continuation`: ``long [1, T]`` on the
        model's device, ready for ``run.model.run_with_cache``."""
        seq = self._seq(i, prompt, own)
        return torch.from_numpy(seq)[None].to(next(self.gpt.parameters()).device)

    def text(self, i: int, prompt: bool = False, own: bool = False) -> str:
        return to_text(self._seq(i, prompt, own), self.vocab)

    def str_tokens(self, i: int, prompt: bool = False, own: bool = False) -> list[str]:
        return self.model.to_str_tokens(self.ids(i, prompt, own)[0])

    def roles(self, i: int, own: bool = False) -> pd.DataFrame:
        """One row per token of maze i's sequence (mazesearch.notebook.roles.token_roles); with
        ``own=True`` of the model's own sequence (its path read leniently, as written)."""
        return token_roles(self._seq(i, own=own), self.vocab, self.grid_n)

    def position(self, i: int, role: str, nth: int = -1, own: bool = False) -> int:
        """The position of the ``nth`` token with ``role`` in maze i (default: the last one)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        found = self.roles(i, own).query("role == @role")["position"].to_numpy()
        if not -len(found) <= nth < len(found):
            raise IndexError(f"maze {i} has {len(found)} tokens with role {role!r}, no number {nth}")
        return int(found[nth])

    # ------------------------------------------------------------------ model

    def _prediction_at(self, i: int) -> int | None:
        """Maze i's row in the predictions (None: not there)."""
        i = self._index(i)
        return i if self._in_order else self._prediction_row.get(int(self.mazes.maze_id[i]))

    def prediction(self, i: int) -> dict | None:
        """The evaluated model's greedy output for maze i (None: no predictions for it)."""
        i = self._index(i)
        row = self._prediction_at(i)
        if row is None:
            return None
        rec = self.predictions.iloc[row]
        exact = rec["exact_path"]
        return {"maze_id": int(rec["maze_id"]), "true_path": self.mazes.path(i).tolist(),
                "predicted_path": [int(c) for c in rec["predicted_path"]],
                "predicted_text": to_text(np.asarray(rec["predicted_tokens"], dtype=np.int64), self.vocab),
                "exact_path": None if pd.isna(exact) else bool(exact)}

    def _coord(self, i: int) -> str:
        """The maze's coordinate form, read from its prompt: "pair" or "unary"."""
        return "pair" if (self.vocab.pair_row[self.tokens.prompt(self._index(i))] >= 0).any() else "unary"

    def generate(self, i: int, max_new_tokens: int | None = None) -> np.ndarray:
        """Greedy continuation of maze i's prompt by the bridge (``TransformerBridge.generate``),
        up to and including ``<PATH_END>``: ``int64 [k]``. Default cap: evaluation's (every cell
        once plus a row's worth, then ``<PATH_END>``), so the output is stage evaluate's."""
        prompt = self.ids(i, prompt=True)  # [1, P]
        w = 2 if self._coord(i) == "pair" else 1  # tokens per cell
        cap = w * (self.grid_n**2 + self.grid_n) + 1 if max_new_tokens is None else int(max_new_tokens)
        cap = min(cap, self.model.cfg.n_ctx - prompt.shape[1])
        out = self.model.generate(prompt, max_new_tokens=cap, do_sample=False, stop_at_eos=True,
                                  eos_token_id=self.vocab.id(PATH_END), verbose=False, return_type="tokens")
        return out[0, prompt.shape[1]:].cpu().numpy().astype(np.int64)

    def continuation(self, i: int) -> np.ndarray:
        """The model's own greedy continuation of maze i's prompt, ``<PATH_END>`` included when it
        wrote one: ``int64 [k]``. Stage evaluate's ``predicted_tokens`` when the handle has the
        suite's predictions (the data of :meth:`failures` and the report), else :meth:`generate`'s
        (the same tokens: tests/test_notebook_failures.py)."""
        i = self._index(i)
        row = self._prediction_at(i)
        if row is not None:
            if pd.isna(self.predictions["exact_path"].iloc[row]):
                raise ValueError(f"suite {self.suite!r} was not fed to the model (see reports/eval/details/"
                                 f"{self.suite}.json): it wrote no path for maze {i}")
            return np.asarray(self.predictions["predicted_tokens"].iloc[row], dtype=np.int64)
        if i not in self._generated:
            self._generated[i] = self.generate(i)
        return self._generated[i]

    def run_with_cache(self, i: int, prompt: bool = False, own: bool = False, **kwargs):
        """``model.run_with_cache`` (no grad) on maze i's whole sequence (teacher-forced), its
        prompt, or (``own=True``) the prompt + the model's own continuation."""
        with torch.no_grad():
            return self.model.run_with_cache(self.ids(i, prompt, own), **kwargs)

    def attention(self, i: int, layer: int, head: int, query: int, cache=None, own: bool = False) -> np.ndarray:
        """Attention weights of one head from position ``query`` to every key: ``float64 [T]``."""
        T = len(self._seq(i, own=own))
        if not -T <= query < T:
            raise IndexError(f"query position {query} is outside maze {i}'s {T} tokens")
        name = f"blocks.{layer}.attn.hook_pattern"
        if cache is None:
            _, cache = self.run_with_cache(i, own=own, names_filter=name)
        pattern = cache[name]  # [batch, head, query, key]
        return pattern[0, head, query % T].detach().cpu().double().numpy()

    def cell_attention(self, i: int, layer: int, head: int, query: int, cache=None,
                       only: tuple[str, ...] | None = None, own: bool = False) -> np.ndarray:
        """Attention from ``query`` summed over each cell's tokens: ``float64 [n*n]``. A cell's
        tokens are every coordinate naming it (edges, origin, target, path; both halves of a
        pair); ``only`` keeps those roles, e.g. ``("edge_from", "edge_to")``."""
        weights = self.attention(i, layer, head, query, cache, own)
        return cell_mass(weights, self.roles(i, own), self.grid_n**2, only)

    def lens(self, i: int, own: bool = False) -> torch.Tensor:
        """The logit lens on maze i's sequence (``own=True``: the model's own): ``float [n_layers + 1, T, d_vocab]``.

        Layer 0 decodes the embeddings (``blocks.0.hook_resid_pre``), layer l the output of
        block l-1; the last layer is the model's own logits. TransformerLens' route:
        ``cache.accumulated_resid(apply_ln=True) @ W_U + b_U``. With the whole stack
        ``apply_ln=True`` runs each layer through the real ``ln_final`` module (its own mean and
        scale, then ``ln_final.w`` and ``ln_final.b``), so nothing is multiplied in by hand; this
        is :func:`mazesearch.interp.lens.lens_logits`, stage logit_lens' decoding (``b_U`` is
        zero: our models have no unembedding bias). tests/test_notebook_results.py checks it against the
        hook-free model layer by layer on a checkpoint whose ``ln_final.w`` is far from 1.
        """
        _, cache = self.run_with_cache(i, own=own, names_filter=lens_hooks(self.model.cfg.n_layers))
        with torch.no_grad():
            stack = cache.accumulated_resid(apply_ln=True)  # [n_layers + 1, 1, T, d_model]
            return (stack @ self.model.W_U + self.model.b_U)[:, 0]  # [n_layers + 1, T, d_vocab]

    # ------------------------------------------------------------------ failures and stage results

    def _distances(self) -> np.ndarray:
        if self._dist is None:
            self._dist = distances_to_target(self.mazes)
        return self._dist

    def failures(self, suite: str | None = None) -> pd.DataFrame:
        """The mazes the model fails (``exact_path`` false in stage evaluate's
        ``data/predictions/<suite>.parquet``; default: the handle's suite), one row each, indexed
        by the maze's row ``i`` in this run: maze_id, the first wrong step (``step``, ``kind``,
        ``at``, ``chose``, ``correct``: :class:`FirstError`) and a few of the stage's per-maze
        metrics. Another suite must be on this run's dataset. When
        ``reports/eval/suites/<suite>.json`` exists its ``model_exact`` must agree with the
        file's count (else ``InputError``: the two come from different runs)."""
        suite = suite or self.suite
        if suite is None:
            raise ValueError(f"no predictions loaded for dataset {self.dataset!r}: pass suite=, or "
                             f"load_run(root, suite=...) with a suite evaluated on it")
        details = _details(self.root, suite)
        if details and details["dataset"] != self.dataset:
            raise ValueError(f"suite {suite!r} was evaluated on dataset {details['dataset']!r}, not this run's "
                             f"{self.dataset!r}: load_run(root, suite={suite!r})")
        preds = self.predictions if suite == self.suite else _read_predictions(self.root, suite, self.mazes,
                                                                               self.dataset)
        if preds["exact_path"].isna().any():
            reason = (details or {}).get("reason") or "see its details file"
            raise ValueError(f"suite {suite!r} was not fed to the model ({reason}): it has no failures to list")
        if not np.array_equal(preds["maze_id"].to_numpy(np.uint64), self.mazes.maze_id):
            raise InputError(self.root / "data" / "predictions" / f"{suite}.parquet",
                             f"does not hold data/mazes/{self.dataset}.parquet's mazes in order",
                             f"re-run `dvc repro evaluate@{suite}`")
        table = failure_table(preds, self.mazes, self._distances())
        headline = self.root / "reports" / "eval" / "suites" / f"{suite}.json"
        if headline.is_file():
            rate = read_json(headline, "evaluation headline").get("model_exact")
            n = len(preds)
            if rate is None or round(rate * n) != n - len(table):
                raise InputError(headline, f"says model_exact {rate}, but data/predictions/{suite}.parquet has "
                                 f"{n - len(table)} of {n} exact", f"re-run `dvc repro evaluate@{suite}`")
        return table

    def first_error(self, i: int) -> FirstError | None:
        """Maze i's first wrong decision in the model's own path (:meth:`continuation`), or None
        when the path is exact: the step, the cell it was at, the cell it chose, the correct
        cell(s), and ``position``, the token of ``run.ids(i, own=True)`` whose logits chose it."""
        i = self._index(i)
        cont, coord = self.continuation(i), self._coord(i)
        cells, _, ended = decode_path(cont, self.vocab, self.grid_n, coord)
        err = first_wrong_step(self.grid_n, self.mazes.open[i], int(self.mazes.origin[i]), int(self.mazes.target[i]),
                               cells, ended, self._distances()[i])
        if err is None:
            return None
        starts = _entry_starts(cont, self.vocab, self.grid_n, coord)
        start = starts[err.step]
        end = starts[err.step + 1] if err.step + 1 < len(starts) else start + 1
        return dataclasses.replace(err, position=int(self.tokens.prompt_len[i]) + start - 1,
                                   written=to_text(cont[start:end], self.vocab))

    def results(self, stage: str) -> StageResults:
        """A stage's JSON outputs: ``.metrics`` (``reports/<stage>/metrics.json``, its DVC metric)
        and ``.details`` (``reports/<stage>/details.json``); paths per stage in
        :data:`mazesearch.notebook.results.FILES`. ``evaluate`` / ``generate`` mean this run's
        suite / dataset (or name one: ``evaluate@size_5``). A missing file raises
        ``FileNotFoundError`` naming it and the ``dvc repro`` command that writes it."""
        if stage == "evaluate":
            if self.suite is None:
                raise ValueError("this run has no suite: name one, e.g. results('evaluate@test')")
            stage = f"evaluate@{self.suite}"
        elif stage == "generate":
            stage = f"generate@{self.dataset}"
        return stage_results(self.root, stage)

    # ------------------------------------------------------------------ pictures

    def _maze_kwargs(self, i: int, predicted=True) -> dict:
        i = self._index(i)
        if predicted is True:  # the evaluated model's path, when the run has one for this maze
            pred = self.prediction(i)
            predicted = None if pred is None else pred["predicted_path"]
        elif predicted is False:
            predicted = None
        return dict(n=self.grid_n, open_row=self.mazes.open[i], origin=int(self.mazes.origin[i]),
                    target=int(self.mazes.target[i]), path=self.mazes.path(i), predicted=predicted)

    def draw_attention(self, i: int, layer: int, head: int, query: int, cache=None,
                       only: tuple[str, ...] | None = None, vmax: float | None = None, predicted=True,
                       own: bool = False):
        """:meth:`cell_attention` as a heatmap on maze i (the query's cell outlined in red dashes).
        ``predicted``: True draws the evaluated model's path (:meth:`prediction`) over it when the
        run has one, False none, or give the cells to draw. ``own``: the query is a position of
        the model's own sequence (:meth:`ids`)."""
        mass = self.cell_attention(i, layer, head, query, cache, only, own)
        roles = self.roles(i, own).iloc[query]
        title = (f"maze {self._index(i)}  L{layer}H{head} from position {int(roles['position'])} "
                 f"{roles['token']} ({roles['role']})\nattention on cell tokens: {mass.sum():.2f}")
        return draw.cell_map(mass, mark=int(roles["cell"]), title=title, vmin=0.0,
                             vmax=vmax if vmax is not None else max(float(mass.max()), 1e-6),
                             **self._maze_kwargs(i, predicted))

    def draw_probe_map(self, i: int, values, title: str = "", vmin: float | None = None,
                       vmax: float | None = None, cmap: str = "viridis", predicted=True):
        """Per-cell (``[n*n]``) or per-edge (``[2n(n-1)]``, canonical order) values on maze i, with
        the model's path over them as :meth:`draw_attention` draws it."""
        values = np.asarray(values, dtype=np.float64).ravel()
        n = self.grid_n
        kwargs = dict(title=title, vmin=vmin, vmax=vmax, cmap=cmap, **self._maze_kwargs(i, predicted))
        if len(values) == n * n:
            return draw.cell_map(values, **kwargs)
        if len(values) == n_edges(n):
            return draw.edge_map(values, **kwargs)
        raise ValueError(f"values must hold one value per cell ({n * n}) or per lattice edge ({n_edges(n)}) "
                         f"of a {n}x{n} grid, got {len(values)}")


def load_run(root: str | Path = ".", dataset: str | None = None, suite: str | None = None,
             device: str = "cpu") -> Run:
    """Everything a notebook needs from the run directory ``root`` (the repository after `dvc repro`).

    ``dataset`` names ``data/mazes/<dataset>.parquet``; ``suite`` the predictions
    ``data/predictions/<suite>.parquet``. Defaults: the suite's dataset, else ``test``; the suite
    named like the dataset when it was evaluated, else no predictions. With a suite whose
    ``reports/eval/details/<suite>.json`` records its tokenizer options, the tokens are the
    mazes re-encoded with them: exactly the sequences evaluation fed the model (a suite may
    override ``tokenizer.*``); otherwise ``data/tokens/<dataset>.parquet``. A missing file
    raises ``FileNotFoundError`` naming it and the ``dvc repro`` stage that makes it.
    """
    root = Path(root)
    if suite is None:  # the suite named like the dataset, if it was evaluated on that dataset
        candidate = dataset or "test"
        found = root / "data" / "predictions" / f"{candidate}.parquet"
        details = _details(root, candidate) if found.is_file() else None
        if found.is_file() and (details is None or details["dataset"] == candidate):
            suite = candidate
    details = _details(root, suite) if suite else None
    if details and dataset and details["dataset"] != dataset:
        raise ValueError(f"suite {suite!r} was evaluated on dataset {details['dataset']!r}, not {dataset!r}")
    dataset = dataset or (details["dataset"] if details else "test")

    vocab_path = _need(root, "data/vocab.json", "vocab")
    vocab = Vocab.from_json(vocab_path)
    mazes = read_mazes(_need(root, f"data/mazes/{dataset}.parquet", f"generate@{dataset}"))
    opts = TokenizerOptions(**details["tokenizer"]) if details else None
    if opts is not None:
        tokens = encode(mazes, vocab, opts)
    else:
        tokens_path = _need(root, f"data/tokens/{dataset}.parquet", f"tokenize@{dataset}")
        tokens = read_tokens(tokens_path, vocab)
        if not np.array_equal(tokens.maze_id, mazes.maze_id):
            raise InputError(tokens_path, f"does not hold the mazes of data/mazes/{dataset}.parquet in order",
                             f"re-run `dvc repro tokenize@{dataset}`")
    predictions = _read_predictions(root, suite, mazes, dataset) if suite else None

    _need(root, "models/model_config.json", "train")
    _need(root, "models/model.safetensors", "train")
    gpt = load_gpt(root / "models", device=device, vocab=vocab, vocab_path=vocab_path)
    # Rotary reads any length: widen n_ctx to the longest prompt plus generate's longest output.
    span = int(tokens.prompt_len.max(initial=0)) + 2 * (mazes.grid_n**2 + mazes.grid_n) + 1
    gpt = with_context(gpt, max(span, int(tokens.lengths.max(initial=0)))).eval()
    bridge = attach_tokenizer(to_bridge(gpt), vocab)
    return Run(root=root, dataset=dataset, suite=suite, model=bridge, gpt=gpt, vocab=vocab, mazes=mazes,
               tokens=tokens, predictions=predictions, tokenizer_options=opts)
