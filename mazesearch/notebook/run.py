"""One handle on a finished run for notebooks: model, vocabulary, mazes, tokens, predictions.

``run = load_run(".")`` reads what ``dvc repro`` wrote under a run directory and gives:

* ``run.model``: the TransformerLens bridge (mazesearch.interp.bridge) with a tokenizer, so
  ``to_str_tokens``, ``to_string``, ``to_tokens(text)`` and ``generate`` work on maze text;
* ``run.roles(i)``: what every token position of maze i is (cell, listed edge, path step);
* ``run.cell_attention`` / ``run.draw_attention`` / ``run.draw_probe_map``: values on the grid.

Why a separate package: it reads files of several stages and imports every layer, and no stage
imports it, so editing it reruns nothing in the pipeline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mazesearch.data.maze import MazeBatch, n_edges, read_mazes
from mazesearch.data.tokens import PATH_END, TokenBatch, TokenizerOptions, Vocab, encode, read_tokens, to_text
from mazesearch.evaluation.suite import with_context
from mazesearch.interp.bridge import to_bridge
from mazesearch.io import InputError, read_json
from mazesearch.model.gpt import GPT, load_gpt
from mazesearch.notebook import draw
from mazesearch.notebook.roles import ROLES, cell_mass, token_roles
from mazesearch.notebook.tokenizer import attach_tokenizer


def _need(root: Path, rel: str, stage: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; build it with `dvc repro {stage}` in {root.resolve()} "
                                f"(or fetch it with `dvc pull {rel}`)")
    return path


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
        ids = [] if self.predictions is None else self.predictions["maze_id"].to_numpy()
        self._prediction_row = {int(m): r for r, m in enumerate(ids)}

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

    def ids(self, i: int, prompt: bool = False) -> torch.Tensor:
        """Maze i's sequence (or its prompt, through ``<PATH_START>``): ``long [1, T]`` on the model's device."""
        i = self._index(i)
        seq = self.tokens.prompt(i) if prompt else self.tokens.tokens(i)
        return torch.from_numpy(seq.astype(np.int64))[None].to(next(self.gpt.parameters()).device)

    def text(self, i: int, prompt: bool = False) -> str:
        return to_text(self.ids(i, prompt)[0].cpu().numpy(), self.vocab)

    def str_tokens(self, i: int, prompt: bool = False) -> list[str]:
        return self.model.to_str_tokens(self.ids(i, prompt)[0])

    def roles(self, i: int) -> pd.DataFrame:
        """One row per token of maze i's sequence (mazesearch.notebook.roles.token_roles)."""
        return token_roles(self.tokens.tokens(self._index(i)), self.vocab, self.grid_n)

    def position(self, i: int, role: str, nth: int = -1) -> int:
        """The position of the ``nth`` token with ``role`` in maze i (default: the last one)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        found = self.roles(i).query("role == @role")["position"].to_numpy()
        if not -len(found) <= nth < len(found):
            raise IndexError(f"maze {i} has {len(found)} tokens with role {role!r}, no number {nth}")
        return int(found[nth])

    # ------------------------------------------------------------------ model

    def prediction(self, i: int) -> dict | None:
        """The evaluated model's greedy output for maze i (None: no predictions for it)."""
        i = self._index(i)
        row = self._prediction_row.get(int(self.mazes.maze_id[i]))
        if row is None:
            return None
        rec = self.predictions.iloc[row]
        exact = rec["exact_path"]
        return {"maze_id": int(rec["maze_id"]), "true_path": self.mazes.path(i).tolist(),
                "predicted_path": [int(c) for c in rec["predicted_path"]],
                "predicted_text": to_text(np.asarray(rec["predicted_tokens"], dtype=np.int64), self.vocab),
                "exact_path": None if pd.isna(exact) else bool(exact)}

    def generate(self, i: int, max_new_tokens: int | None = None) -> np.ndarray:
        """Greedy continuation of maze i's prompt by the bridge (``TransformerBridge.generate``),
        up to and including ``<PATH_END>``: ``int64 [k]``. Default cap: evaluation's (every cell
        once plus a row's worth, then ``<PATH_END>``), so the output is stage evaluate's."""
        prompt = self.ids(i, prompt=True)  # [1, P]
        w = 2 if (self.vocab.pair_row[prompt[0].cpu().numpy()] >= 0).any() else 1  # tokens per cell
        cap = w * (self.grid_n**2 + self.grid_n) + 1 if max_new_tokens is None else int(max_new_tokens)
        cap = min(cap, self.model.cfg.n_ctx - prompt.shape[1])
        out = self.model.generate(prompt, max_new_tokens=cap, do_sample=False, stop_at_eos=True,
                                  eos_token_id=self.vocab.id(PATH_END), verbose=False, return_type="tokens")
        return out[0, prompt.shape[1]:].cpu().numpy().astype(np.int64)

    def run_with_cache(self, i: int, prompt: bool = False, **kwargs):
        """``model.run_with_cache`` on maze i's whole sequence (teacher-forced) or its prompt."""
        with torch.no_grad():
            return self.model.run_with_cache(self.ids(i, prompt), **kwargs)

    def attention(self, i: int, layer: int, head: int, query: int, cache=None) -> np.ndarray:
        """Attention weights of one head from position ``query`` to every key: ``float64 [T]``."""
        T = len(self.tokens.tokens(self._index(i)))
        if not -T <= query < T:
            raise IndexError(f"query position {query} is outside maze {i}'s {T} tokens")
        name = f"blocks.{layer}.attn.hook_pattern"
        if cache is None:
            _, cache = self.run_with_cache(i, names_filter=name)
        pattern = cache[name]  # [batch, head, query, key]
        return pattern[0, head, query % T].detach().cpu().double().numpy()

    def cell_attention(self, i: int, layer: int, head: int, query: int, cache=None,
                       only: tuple[str, ...] | None = None) -> np.ndarray:
        """Attention from ``query`` summed over each cell's tokens: ``float64 [n*n]``. A cell's
        tokens are every coordinate naming it (edges, origin, target, path; both halves of a
        pair); ``only`` keeps those roles, e.g. ``("edge_from", "edge_to")``."""
        weights = self.attention(i, layer, head, query, cache)
        return cell_mass(weights, self.roles(i), self.grid_n**2, only)

    # ------------------------------------------------------------------ pictures

    def _maze_kwargs(self, i: int) -> dict:
        i = self._index(i)
        return dict(n=self.grid_n, open_row=self.mazes.open[i], origin=int(self.mazes.origin[i]),
                    target=int(self.mazes.target[i]), path=self.mazes.path(i))

    def draw_attention(self, i: int, layer: int, head: int, query: int, cache=None,
                       only: tuple[str, ...] | None = None, vmax: float | None = None):
        """:meth:`cell_attention` as a heatmap on maze i (the query's cell outlined in red dashes)."""
        mass = self.cell_attention(i, layer, head, query, cache, only)
        roles = self.roles(i).iloc[query]
        title = (f"maze {self._index(i)}  L{layer}H{head} from position {int(roles['position'])} "
                 f"{roles['token']} ({roles['role']})\nattention on cell tokens: {mass.sum():.2f}")
        return draw.cell_map(mass, mark=int(roles["cell"]), title=title, vmin=0.0,
                             vmax=vmax if vmax is not None else max(float(mass.max()), 1e-6), **self._maze_kwargs(i))

    def draw_probe_map(self, i: int, values, title: str = "", vmin: float | None = None,
                       vmax: float | None = None, cmap: str = "viridis"):
        """Per-cell (``[n*n]``) or per-edge (``[2n(n-1)]``, canonical order) values on maze i."""
        values = np.asarray(values, dtype=np.float64).ravel()
        n = self.grid_n
        kwargs = dict(title=title, vmin=vmin, vmax=vmax, cmap=cmap, **self._maze_kwargs(i))
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
    predictions = None
    if suite:
        pred_path = _need(root, f"data/predictions/{suite}.parquet", f"evaluate@{suite}")
        predictions = pd.read_parquet(pred_path)
        stray = ~np.isin(predictions["maze_id"].to_numpy(np.uint64), mazes.maze_id)
        if stray.any():
            raise InputError(pred_path, f"{int(stray.sum())} of its mazes are not in data/mazes/{dataset}.parquet",
                             f"suite {suite!r} is not on dataset {dataset!r}: pass dataset= or suite=")

    _need(root, "models/model_config.json", "train")
    _need(root, "models/model.safetensors", "train")
    gpt = load_gpt(root / "models", device=device, vocab=vocab, vocab_path=vocab_path)
    # Rotary reads any length: widen n_ctx to the longest prompt plus generate's longest output.
    span = int(tokens.prompt_len.max(initial=0)) + 2 * (mazes.grid_n**2 + mazes.grid_n) + 1
    gpt = with_context(gpt, max(span, int(tokens.lengths.max(initial=0)))).eval()
    bridge = attach_tokenizer(to_bridge(gpt), vocab)
    return Run(root=root, dataset=dataset, suite=suite, model=bridge, gpt=gpt, vocab=vocab, mazes=mazes,
               tokens=tokens, predictions=predictions, tokenizer_options=opts)
