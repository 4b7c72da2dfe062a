"""Greedy decoding: an oracle that writes the true path scores exact=1, garbage never crashes,
caps hold, and the key/value-cached GPT decoder gives the reference decoder's tokens."""

import numpy as np
import pytest
import torch

from helpers import REL_TOL, one_torch_thread, rel_err
from mazesearch.data.dataset import build_mazes
from mazesearch.evaluation.metrics import compute_metrics, decision_points
from mazesearch.model.gpt import GPT, ModelConfig
from mazesearch.evaluation.predict import predict, predict_forks, predict_paths
from mazesearch.evaluation.rollout import greedy_rollout, greedy_rollout_cached, teacher_forced_argmax
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode


@pytest.fixture(autouse=True, scope="module")
def one_thread(trees, cyclic):  # after the mazes are built: see helpers.one_torch_thread
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build(6)


@pytest.fixture(scope="module")
def trees():
    batch, _ = build_mazes(generator="dfs", grid_n=4, n_mazes=40, seed=1)
    return batch


@pytest.fixture(scope="module")
def cyclic():
    batch, _ = build_mazes(generator="percolation", grid_n=4, n_mazes=40, seed=2, p=0.7)
    return batch


class Oracle:
    """A fake model that knows every maze's true sequence and predicts its next token.

    Rows are recognised by their prompt (the tokens up to the first <PATH_START>); a position
    past the true sequence predicts <PATH_END>. ``wrong`` maps a position offset after
    <PATH_START> to a token to emit instead (to script mistakes).
    """

    def __init__(self, tokens, vocab, wrong=None, instead_of_end=None):
        self.vocab, self.V = vocab, len(vocab)
        self.start, self.end = vocab.token_to_id["<PATH_START>"], vocab.token_to_id["<PATH_END>"]
        self.truth = {bytes(tokens.prompt(i).astype(np.int64)): tokens.tokens(i).astype(np.int64)
                      for i in range(len(tokens))}
        self.wrong = wrong or {}
        self.instead_of_end = instead_of_end  # never write <PATH_END>: write this token instead
        self.calls = 0

    def __call__(self, x):  # [batch, pos] -> [batch, pos, vocab]
        self.calls += 1
        x = x.cpu().numpy()
        P = x.shape[1]
        nxt = np.empty(x.shape, dtype=np.int64)
        for r, row in enumerate(x):
            cut = int(np.flatnonzero(row == self.start)[0]) + 1
            true = self.truth[bytes(row[:cut].astype(np.int64))]
            nxt[r] = self.end
            k = min(P, len(true) - 1)
            nxt[r, :k] = true[1 : k + 1]
            for offset, token in self.wrong.items():
                if 0 <= cut - 1 + offset < P:
                    nxt[r, cut - 1 + offset] = token
        if self.instead_of_end is not None:
            nxt[nxt == self.end] = self.instead_of_end
        return torch.nn.functional.one_hot(torch.from_numpy(nxt), self.V).float()


def _garbage(seed, V):
    gen = torch.Generator().manual_seed(seed)
    return lambda x: torch.randn(x.shape[0], x.shape[1], V, generator=gen)


@pytest.mark.parametrize("coord", ["unary", "pair"])
@pytest.mark.parametrize("which", ["trees", "cyclic"])
def test_oracle_scores_exact(which, coord, vocab, request):
    batch = request.getfixturevalue(which)
    tokens = encode(batch, vocab, TokenizerOptions(coord=coord))
    oracle = Oracle(tokens, vocab)
    generated, walks = predict_paths(oracle, tokens, vocab, batch.grid_n, coord, batch_size=16)
    for i in range(len(batch)):  # generated = the true continuation, <PATH_END> included
        assert generated[i].tolist() == tokens.tokens(i)[tokens.prompt_len[i]:].tolist()
        assert walks.walk(i).tolist() == batch.path(i).tolist()
    forks = predict_forks(oracle, tokens, batch, vocab, coord, batch_size=16)
    m = compute_metrics(batch, walks, forks)
    assert m["exact_path"].all() and m["correct_end"].all() and m["valid_path"].all()
    assert (m["node_overlap"] == 1).all() and (m["length_ratio"] == 1).all()
    has_forks = m["n_forks"] > 0
    assert has_forks.any() and (m["frac_forks_correct"][has_forks] == 1).all()


def test_scripted_mistakes_are_scored(trees, vocab):
    tokens = encode(trees, vocab, TokenizerOptions())
    # position 0 after <PATH_START> is the origin; write a garbage token at the second cell
    oracle = Oracle(tokens, vocab, wrong={1: vocab.token_to_id["<ADJLIST_START>"]})
    _, walks = predict_paths(oracle, tokens, vocab, trees.grid_n, "unary", batch_size=8)
    m = compute_metrics(trees, walks)
    assert not m["exact_path"].any() and not m["valid_path"].any()
    assert (m["n_invalid"] == 1).all() and m["ended"].all()
    # an off-grid coordinate (5,5) on a 4x4 grid is invalid too; a missing <PATH_END> is scored
    oracle = Oracle(tokens, vocab, wrong={1: vocab.token_to_id["(5,5)"]})
    _, walks = predict_paths(oracle, tokens, vocab, trees.grid_n, "unary", batch_size=8)
    assert (compute_metrics(trees, walks)["n_invalid"] == 1).all()
    no_end = Oracle(tokens, vocab, instead_of_end=vocab.token_to_id["(5,0)"])
    _, walks = predict_paths(no_end, tokens, vocab, trees.grid_n, "unary")
    m = compute_metrics(trees, walks)
    assert not m["ended"].any() and not m["exact_path"].any() and m["target_reached"].all()
    assert (m["n_pred_cells"] == 4 * 4 + 4 + 1).all()  # the cap: grid_n**2 + grid_n cells + <PATH_END>


def test_garbage_model_does_not_crash(trees, cyclic, vocab):
    for batch, coord in ((trees, "unary"), (cyclic, "pair")):
        tokens = encode(batch, vocab, TokenizerOptions(coord=coord))
        fn = _garbage(0, len(vocab))
        generated, walks = predict_paths(fn, tokens, vocab, batch.grid_n, coord, batch_size=7)
        w = 2 if coord == "pair" else 1
        assert all(1 <= len(g) <= w * 20 + 1 for g in generated)
        forks = predict_forks(fn, tokens, batch, vocab, coord, batch_size=7)
        assert forks.shape == decision_points(batch)[0].shape
        m = compute_metrics(batch, walks, forks)
        assert m["n_invalid"].sum() > 0 and not m["exact_path"].any()


def test_caps_and_early_stop():
    V, end, pad = 5, 4, 0
    prompts = [np.array([1, 2, 3]), np.array([1] * 10), np.array([2, 2])]

    def never_end(x):
        out = torch.zeros(*x.shape, V)
        out[..., 3] = 1.0
        return out

    gen = greedy_rollout(never_end, prompts, max_new_tokens=6, end_id=end, pad_id=pad, batch_size=2, n_ctx=13)
    assert [len(g) for g in gen] == [6, 3, 6]  # the 10-token prompt has room for 3 (n_ctx 13)
    assert all((g == 3).all() for g in gen)

    def end_after_two(x):  # <end> once a row holds two 3s
        out = torch.zeros(*x.shape, V)
        threes = (x == 3).cumsum(1)
        out[..., 3] = 1.0
        out[..., end] = (threes >= 2).float() * 2
        return out

    gen = greedy_rollout(end_after_two, prompts, max_new_tokens=50, end_id=end, pad_id=pad, batch_size=3)
    assert [g.tolist() for g in gen] == [[3, end], [3, 3, end], [3, 3, end]]
    with pytest.raises(ValueError, match="n_ctx"):
        greedy_rollout(never_end, prompts, max_new_tokens=5, end_id=end, pad_id=pad, n_ctx=10)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_rollout(never_end, prompts, max_new_tokens=0, end_id=end, pad_id=pad)


def test_teacher_forced_argmax_positions(trees, vocab):
    tokens = encode(trees, vocab, TokenizerOptions())
    seqs = [tokens.tokens(i) for i in range(len(tokens))]
    positions = [np.arange(tokens.prompt_len[i] - 1, len(seqs[i]) - 1) for i in range(len(tokens))]
    got = teacher_forced_argmax(Oracle(tokens, vocab), seqs, positions, vocab.pad_id, batch_size=9)
    for i in range(len(tokens)):
        assert got[i].tolist() == seqs[i][tokens.prompt_len[i]:].tolist()


def _random_gpt(positional, V, n_ctx=80, seed=0):
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=n_ctx, d_vocab=V,
                      positional=positional)
    model = GPT(cfg, seed=seed)
    with torch.no_grad():  # larger weights: argmax moves around more, so outputs differ per row
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_kv_cache_matches_full_forward(positional):
    """The cached decoder's prompt pass (left padding, the padding mask, per-row positions) scores
    every teacher token as the plain forward of the unpadded sequence does."""
    V = 23
    model = _random_gpt(positional, V)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, V, size=k) for k in (9, 4, 9, 13, 1)]  # ragged: left padding + mask
    teacher = [rng.integers(1, V, size=k) for k in (4, 0, 2, 3, 4)]
    _, argmax = greedy_rollout_cached(model, prompts, 2, end_id=V - 1, pad_id=0, batch_size=8, teacher=teacher)
    with torch.inference_mode():
        for p, t, got in zip(prompts, teacher, argmax):
            full = model(torch.tensor(np.r_[p, t], dtype=torch.long)[None])[0]  # [len, V]
            want = full[len(p) - 1 : len(p) - 1 + len(t)].argmax(-1).numpy()
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_cached_rollout_equals_reference(positional):
    V = 23
    learned = positional == "learned"
    model = _random_gpt(positional, V, n_ctx=40 if learned else 64, seed=1)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, V - 1, size=k) for k in rng.integers(5, 30, size=24)]
    probe = greedy_rollout_cached(model, prompts, 8, end_id=-1, pad_id=0, batch_size=64)
    # make the end token something the model does write, at varying steps
    end_id = int(np.bincount(np.concatenate([g[2:] for g in probe]), minlength=V).argmax())
    ref = greedy_rollout(model, prompts, 25, end_id=end_id, pad_id=0, batch_size=8, n_ctx=40 if learned else None)
    got = greedy_rollout_cached(model, prompts, 25, end_id=end_id, pad_id=0, batch_size=8)
    assert [g.tolist() for g in got] == [r.tolist() for r in ref]
    lengths = [len(g) for g in got]
    assert len(set(lengths)) > 2  # rows stopped at different steps (compaction exercised)
    assert any(g[-1] == end_id for g in got) and any(g[-1] != end_id for g in got)
    if learned:  # capped by n_ctx
        assert all(len(p) + len(g) <= 40 for p, g in zip(prompts, got))


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_one_pass_predict_equals_separate_passes(cyclic, vocab, positional):
    tokens = encode(cyclic, vocab, TokenizerOptions())
    model = _random_gpt(positional, len(vocab), n_ctx=200, seed=2)
    gen, walks, forks = predict(model, tokens, cyclic, vocab, "unary", batch_size=16)
    gen2, walks2 = predict_paths(model, tokens, vocab, cyclic.grid_n, "unary", batch_size=16)
    forks2 = predict_forks(model, tokens, cyclic, vocab, "unary", batch_size=16)
    assert [g.tolist() for g in gen] == [g.tolist() for g in gen2]
    assert np.array_equal(walks.cells_flat, walks2.cells_flat) and np.array_equal(forks, forks2)
    assert len(set(forks.tolist())) > 2  # the random model's choices vary
    # teacher argmax entry 0 is the first generated token
    prompts = [tokens.prompt(i) for i in range(len(tokens))]
    teacher = [tokens.tokens(i)[tokens.prompt_len[i]:] for i in range(len(tokens))]
    _, argmax = greedy_rollout_cached(model, prompts, 3, -1, vocab.pad_id, 16, teacher=teacher)
    assert [a[0] for a in argmax] == [g[0] for g in gen]
    assert all(len(a) == len(t) for a, t in zip(argmax, teacher))


def test_rollout_is_deterministic(trees, vocab):
    tokens = encode(trees.take(np.arange(12)), vocab, TokenizerOptions())
    model = _random_gpt("learned", len(vocab), n_ctx=200)
    a, _ = predict_paths(model, tokens, vocab, trees.grid_n, "unary", batch_size=12)
    b, _ = predict_paths(model, tokens, vocab, trees.grid_n, "unary", batch_size=5)
    assert [x.tolist() for x in a] == [y.tolist() for y in b]


# ---------------------------------------------------------------------------- the stages


def test_evaluate_and_summary_stages(tmp_path, monkeypatch, capsys):
    import dataclasses
    import json
    import sys

    import pyarrow.parquet as pq
    import yaml

    from mazesearch.data.maze import write_mazes
    from mazesearch.model.gpt import save_checkpoint
    from mazesearch.params import load_params
    from mazesearch.data.tokens import read_tokens, write_tokens
    from mazesearch.io import InputError
    from mazesearch.params import suite_tokenizer
    from stages import eval_summary, evaluate, pictures, tokenize

    def suite_opts(params, suite):
        return TokenizerOptions(**suite_tokenizer(params, suite))

    monkeypatch.chdir(tmp_path)
    datasets = {
        "train": dict(generator="dfs", grid_n=3, n_mazes=150, seed=1),
        "val": dict(generator="dfs", grid_n=3, n_mazes=10, seed=2),
        "test": dict(generator="dfs", grid_n=3, n_mazes=20, seed=3),
        "big": dict(generator="dfs", grid_n=4, n_mazes=6, seed=4),
        "perc": dict(generator="percolation", grid_n=3, n_mazes=12, seed=5, p=0.7),
    }
    suites = {"test": {"dataset": "test"}, "test_sorted": {"dataset": "test", "tokenizer": {"edge_order": "sorted"}},
              "test_pair": {"dataset": "test", "tokenizer": {"coord": "pair"}, "n_mazes": 8},
              "big": {"dataset": "big", "tokenizer": {"coord": "pair"}}, "perc": {"dataset": "perc"}}
    params = {"datasets": datasets, "tokenizer": {"max_grid_n": 4},
              "model": dict(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32),
              "evaluate": {"batch_size": 8, "n_pictures": 3, "baseline_seed": 0, "suites": suites}}
    Path = type(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    train_ids = None
    for name, spec in datasets.items():
        batch, _ = build_mazes(exclude_ids=None if name == "train" else train_ids, **spec)
        if name == "train":
            train_ids = batch.maze_id
        write_mazes(batch, f"data/mazes/{name}.parquet")
    vocab = Vocab.build(4)
    vocab.to_json("data/vocab.json")
    monkeypatch.setattr(sys, "argv", ["tokenize", "test"])
    tokenize.main()

    # n_ctx fits every 3x3 suite (pair coordinates are the longest) but not the 4x4 one
    p = load_params("params.yaml")
    from mazesearch.data.maze import read_mazes

    test_batch = read_mazes("data/mazes/test.parquet")
    perc_batch = read_mazes("data/mazes/perc.parquet")
    lengths = [encode(b, vocab, o).lengths.max() for b in (test_batch, perc_batch)
               for o in (suite_opts(p, "test_pair"), TokenizerOptions())]
    n_ctx = int(max(lengths))
    big_opts = suite_opts(p, "big")
    assert encode(read_mazes("data/mazes/big.parquet"), vocab, big_opts).lengths.min() > n_ctx
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, n_ctx=n_ctx, d_vocab=len(vocab))
    save_checkpoint(GPT(cfg, seed=0), "models")

    # the default suite's sequences are byte-identical to stage tokenize's file
    opts = suite_opts(p, "test")
    assert opts == TokenizerOptions()
    assert suite_opts(p, "test_sorted") == TokenizerOptions(edge_order="sorted")
    write_tokens(encode(test_batch, vocab, opts), "again.parquet")
    assert Path("again.parquet").read_bytes() == Path("data/tokens/test.parquet").read_bytes()
    assert np.array_equal(read_tokens("again.parquet").flat, read_tokens("data/tokens/test.parquet").flat)

    for suite in suites:
        monkeypatch.setattr(sys, "argv", ["evaluate", suite])
        evaluate.main()
    from mazesearch.evaluation.stats import wilson_interval

    headline_keys = ["model_exact", "model_exact_lo", "model_exact_hi", "baseline_exact"]
    for suite, spec in suites.items():
        head = json.loads(Path(f"reports/eval/suites/{suite}.json").read_text())
        report = json.loads(Path(f"reports/eval/details/{suite}.json").read_text())
        assert list(head) == headline_keys  # the DVC metric: headline numbers only
        table = pq.read_table(f"data/predictions/{suite}.parquet")
        n = spec.get("n_mazes", datasets[spec["dataset"]]["n_mazes"])
        assert report["n_mazes"] == table.num_rows == n
        assert report["leakage"] == 0
        assert 0 < report["baseline"]["exact_path"] <= 1
        assert report["baseline"]["valid_path"] == 1.0  # the walker never makes an illegal move
        base = table.column("baseline_exact_path").to_numpy(zero_copy_only=False)
        assert base.mean() == pytest.approx(head["baseline_exact"], abs=1e-6)
        assert head["baseline_exact"] == report["baseline"]["exact_path"]
        lo, hi = wilson_interval(int(base.sum()), n)
        ci = report["exact_path_ci95"]["baseline"]  # the baseline's interval: details only
        assert (ci["low"], ci["high"]) == pytest.approx((lo, hi), abs=1e-6)
        assert ci["k"] == int(base.sum()) and ci["low"] <= head["baseline_exact"] <= ci["high"]
        if suite == "big":
            assert report["feedable"] is False and "n_ctx" in report["reason"]
            assert report["model"] is None and table.column("exact_path").null_count == n
            assert head["model_exact"] is None
            assert all(head[k] is None for k in headline_keys if k.startswith("model_"))
        else:
            assert report["feedable"] is True and report["reason"] is None
            tokens = table.column("predicted_tokens").to_pylist()
            assert all(len(t) >= 1 for t in tokens)
            exact = table.column("exact_path").to_numpy(zero_copy_only=False)
            assert report["model"]["exact_path"] == head["model_exact"] == pytest.approx(exact.mean(), abs=1e-6)
            assert (head["model_exact_lo"], head["model_exact_hi"]) == pytest.approx(
                wilson_interval(int(exact.sum()), n), abs=1e-6)
            assert 0 <= report["model"]["valid_path"] <= 1 and 0 <= report["model"]["first_fork_correct"] <= 1
    monkeypatch.setattr(sys, "argv", ["pictures"])  # drawn from the predictions alone
    pictures.main()
    assert sorted(p.name for p in Path("reports/eval/pictures").iterdir()) == sorted(f"{s}.png" for s in suites)
    assert "pictures big: 3 mazes" in capsys.readouterr().out
    # same params -> byte-identical outputs
    outs = ["data/predictions/test.parquet", "reports/eval/suites/test.json", "reports/eval/details/test.json"]
    before = [Path(f).read_bytes() for f in outs]
    monkeypatch.setattr(sys, "argv", ["evaluate", "test"])
    evaluate.main()
    assert [Path(f).read_bytes() for f in outs] == before

    monkeypatch.setattr(sys, "argv", ["eval_summary"])
    eval_summary.main()
    summary = json.loads(Path("reports/eval/summary.json").read_text())
    assert list(summary) == list(suites)
    test_head = json.loads(Path("reports/eval/suites/test.json").read_text())
    assert summary["test"]["model_exact_path_lo"] == test_head["model_exact_lo"]
    assert summary["big"]["model_exact_path_lo"] is None and summary["big"]["baseline_exact_path_hi"] is not None
    md = Path("reports/eval/summary.md").read_text()
    assert md.count("\n| ") == len(suites) + 1 and "big: not fed to the model" in md
    csv = Path("reports/eval/summary_plot.csv").read_text().splitlines()
    assert csv[0] == "suite,series,exact,lo,hi" and len(csv) == 2 * len(suites)  # big: baseline row only
    assert [r.split(",")[1] for r in csv if r.startswith("big,")] == ["baseline"]
    model_test = next(r for r in csv if r.startswith("test,model,")).split(",")
    assert [float(v) for v in model_test[2:]] == pytest.approx(
        [test_head[k] for k in ("model_exact", "model_exact_lo", "model_exact_hi")], rel=1e-5)

    # a rotary model has no position table: it reads the suite that is too long for learned positions
    save_checkpoint(GPT(dataclasses.replace(cfg, positional="rotary"), seed=0), "models_rotary")
    monkeypatch.setattr(sys, "argv", ["evaluate", "big", "--model-dir", "models_rotary", "--reports-dir", "rotary",
                                      "--details-dir", "rotary/details", "--predictions-dir", "rotary"])
    evaluate.main()
    assert json.loads(Path("rotary/big.json").read_text())["model_exact"] is not None
    report = json.loads(Path("rotary/details/big.json").read_text())
    assert report["feedable"] is True and report["longest_sequence"] > report["model_n_ctx"] == n_ctx
    assert pq.read_table("rotary/big.parquet").column("exact_path").null_count == 0

    Path("reports/eval/details/perc.json").unlink()
    monkeypatch.setattr(sys, "argv", ["eval_summary"])
    with pytest.raises(InputError, match="perc.json: suite report does not exist"):
        eval_summary.main()
    monkeypatch.setattr(sys, "argv", ["evaluate", "nope"])
    with pytest.raises(InputError, match="not in evaluate.suites"):
        evaluate.main()


def test_decoder_internals_stay_private():
    """Rollouts under an edit go through the decoders' public ``intervention=`` argument: no file but
    rollout.py names its decoder states or loop (subclassing them once made interp fragile)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    private = re.compile(r"\b(_KVCache|_Recompute)\b|rollout import[^\n]*\b_decode\b|rollout\._decode\b")
    me = Path(__file__).resolve()
    offenders = [str(f.relative_to(root)) for d in ("mazesearch", "stages", "tests") for f in sorted((root / d).rglob("*.py"))
                 if f.resolve() != me and f.name != "rollout.py" and private.search(f.read_text())]
    assert offenders == []
