"""The report's explorer data and page (mazesearch.report.{explorer,build,page}, stage report).

Oracles: the vocabulary's token strings (cells), token roles + cell_mass from mazesearch.interp.roles
on the bridge's attention (attention per cell), the hook-free GPT's own residual stream and final
logits (logit lens), a planted residual stream (probes), PNG chunks read by hand (metadata)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import one_torch_thread
from browser import explorer_doc
from report_fixtures import build_report_run, report_args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_report_run(tmp_path_factory.mktemp("report_run"))


def test_cell_of_token_reads_the_token_strings():
    from mazesearch.data.tokens import Vocab
    from mazesearch.report.explorer import cell_of_token

    vocab = Vocab.build(5)
    for n in (3, 5):
        cells = cell_of_token(vocab, n)
        for i, tok in enumerate(vocab.id_to_token):
            m = re.fullmatch(r"\((\d+),(\d+)\)", tok)
            want = int(m[1]) * n + int(m[2]) if m and int(m[1]) < n and int(m[2]) < n else -1
            assert cells[i] == want, tok


def test_pick_rows_failures_first_up_to_half():
    from mazesearch.report.explorer import pick_rows

    exact = np.array([True, False, True, False, False, True])
    assert pick_rows(exact, 4).tolist() == [1, 3, 0, 2]  # two failures, then two successes
    assert pick_rows(exact, 3).tolist() == [1, 3, 0]
    assert pick_rows(np.array([True, True, False]), 3).tolist() == [2, 0, 1]
    assert pick_rows(np.array([False, False, True]), 3).tolist() == [0, 1, 2]  # successes run short
    assert pick_rows(np.array([None, True], dtype=object), 1).tolist() == [0]  # undefined counts as failure


def test_pack_round_trips_to_a_255th():
    from mazesearch.report.explorer import pack, unpack

    x = np.random.default_rng(0).random((3, 4, 5))
    x[0, 0, 0], x[0, 0, 1] = -0.2, 1.7  # clipped
    back = unpack(pack(x), x.shape)
    assert np.abs(back - np.clip(x, 0, 1)).max() <= 0.5 / 255 + 1e-12


def _explore_inputs(run):
    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import Vocab, read_tokens
    from mazesearch.interp.bridge import to_bridge
    from mazesearch.model.gpt import load_gpt

    vocab = Vocab.from_json(run / "data" / "vocab.json")
    mazes = read_mazes(run / "data" / "mazes" / "probe.parquet").take(np.arange(4))
    tokens = read_tokens(run / "data" / "tokens" / "probe.parquet", vocab).take(np.arange(4))
    gpt = load_gpt(run / "models", vocab=vocab).eval()
    predicted = [tokens.tokens(i)[tokens.prompt_len[i]:].astype(np.int64) for i in range(4)]  # true path + END
    predicted[1] = predicted[1][:2]  # one cut short: no <PATH_END>
    return vocab, mazes, tokens, gpt, to_bridge(gpt), predicted


def test_explore_matches_roles_and_the_hook_free_model(run):
    from mazesearch.interp.roles import cell_mass, token_roles
    from mazesearch.report.explorer import explore, unpack

    with one_torch_thread():
        vocab, mazes, tokens, gpt, bridge, predicted = _explore_inputs(run)
        records = explore(bridge, vocab, mazes, tokens, predicted, probes=[])
        L, H, n = gpt.cfg.n_layers, gpt.cfg.n_heads, mazes.grid_n
        C = n * n
        checked = 0
        for i, rec in enumerate(records):
            seq = np.concatenate([tokens.prompt(i), predicted[i]]).astype(np.int64)
            S, P = len(predicted[i]), int(tokens.prompt_len[i])
            assert len(rec["steps"]) == S
            assert [s["token"] for s in rec["steps"]] == [vocab.id_to_token[t] for t in predicted[i]]
            attn = unpack(rec["attn"], (S, L, H, C))
            lens = unpack(rec["lens"], (S, L + 1, C))
            ids = torch.from_numpy(seq)[None]
            with torch.no_grad():
                _, cache = bridge.run_with_cache(ids)
                streams = list(gpt.residual_stream(ids))  # L + 1 x [1, T, d]
                final = torch.softmax(gpt(ids)[0].double(), -1).numpy()  # [T, V]
            roles = token_roles(seq if i != 1 else tokens.tokens(i), vocab, n)  # roles need a whole path
            for s in range(S):
                q = P - 1 + s
                for layer in range(L):
                    for h in range(H):
                        w = cache[f"blocks.{layer}.attn.hook_pattern"][0, h, q].double().numpy()
                        if i == 1:
                            w = np.concatenate([w, np.zeros(len(roles) - len(w))])
                        want = cell_mass(w, roles, C)
                        assert np.abs(attn[s, layer, h] - want).max() <= 0.5 / 255 + 1e-6
                for layer, resid in enumerate(streams):
                    with torch.no_grad():
                        probs = torch.softmax(gpt.logits(resid[0, q]).double(), -1).numpy()
                    want = probs[vocab.unary_id[:n, :n].ravel()]
                    assert np.abs(lens[s, layer] - want).max() <= 0.5 / 255 + 1e-4
                    top, p = rec["steps"][s]["lens_top"][layer]
                    assert top == vocab.id_to_token[int(probs.argmax())] and abs(p - probs.max()) <= 1e-3
                # the last layer's lens is the model's own output distribution
                assert np.abs(lens[s, L] - final[q, vocab.unary_id[:n, :n].ravel()]).max() <= 0.5 / 255 + 1e-4
                checked += 1
        assert checked == sum(len(p) for p in predicted)
        assert records[0]["true_path"] == mazes.path(0).tolist()
        assert records[0]["open"] == "".join(map(str, mazes.open[0]))


def test_a_placed_failure_carries_its_first_wrong_step_p_right_and_noncell_attention(run):
    """A 2x2 maze placed in the 3x3 lattice, walked through a wall: the record flags step 1, gives
    per layer the lens probability of the right cell (oracle: the hook-free model's residual stream
    through its own unembedding) and each head's attention on every non-cell token (oracle: the
    bridge's pattern summed by token), which with the cells' adds up to 1."""
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.tokens import TokenizerOptions, encode
    from mazesearch.report.explorer import END, explore, right_choices, unpack

    with one_torch_thread():
        vocab, _, _, gpt, bridge, _ = _explore_inputs(run)
        mazes, _ = build_mazes(generator="dfs", grid_n=3, sizes=[2], n_mazes=6, seed=3)
        tokens = encode(mazes, vocab, TokenizerOptions())
        n, L, H = 3, gpt.cfg.n_layers, gpt.cfg.n_heads
        cell_id = lambda c: int(vocab.unary_id[c // n, c % n])  # noqa: E731
        i = next(i for i in range(len(mazes)) if mazes.path_len[i] >= 2)  # a way round: 2 moves or more
        path = mazes.path(i).tolist()
        blocked = [c for c in range(n * n) if c not in {int(a) for e in edge_endpoints_open(mazes, i) for a in e}]
        assert len(blocked) == 5  # placed: five uncarved cells
        # origin, then a jump to the farthest uncarved cell (off the maze), then <PATH_END>
        far = max(blocked, key=lambda c: abs(c // n - path[0] // n) + abs(c % n - path[0] % n))
        walk = [path[0], far]  # not a lattice neighbour: a jump
        predicted = [np.array([cell_id(c) for c in walk] + [vocab.id("<PATH_END>")], np.int64)]
        rec = explore(bridge, vocab, mazes.take(np.array([i])), tokens.take(np.array([i])), predicted, probes=[])[0]
        assert rec["first_wrong"] == 1
        assert [s["kind"] for s in rec["steps"]] == ["start", "jump", "end"]
        right, _ = right_choices(n, mazes.open[i], path[0], path[-1], walk + [END])
        assert [s["right"] for s in rec["steps"]] == right and right[1] == [path[1]] and right[2] == []
        assert rec["steps"][2]["p_right"] is None  # nothing is right off the maze
        seq = np.concatenate([tokens.prompt(i), predicted[0]]).astype(np.int64)
        ids = torch.from_numpy(seq)[None]
        P, S = int(tokens.prompt_len[i]), 3
        K = len(rec["noncell_tokens"])
        noncell = unpack(rec["noncell"], (S, L, H, K))
        attn = unpack(rec["attn"], (S, L, H, n * n))
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids)
            streams = list(gpt.residual_stream(ids))
        for s in range(2):
            q = P - 1 + s
            want_ids = [cell_id(c) for c in rec["steps"][s]["right"]]
            for layer, resid in enumerate(streams):
                with torch.no_grad():
                    probs = torch.softmax(gpt.logits(resid[0, q]).double(), -1).numpy()
                assert abs(rec["steps"][s]["p_right"][layer] - probs[want_ids].sum()) <= 1e-3
            for layer in range(L):
                for h in range(H):
                    w = cache[f"blocks.{layer}.attn.hook_pattern"][0, h, q, : q + 1].double().numpy()
                    for k, tok in enumerate(rec["noncell_tokens"]):
                        want = w[seq[: q + 1] == vocab.id(tok)].sum()
                        assert abs(noncell[s, layer, h, k] - want) <= 0.5 / 255 + 1e-6, (s, layer, h, tok)
                    assert abs(noncell[s, layer, h].sum() + attn[s, layer, h].sum() - 1.0) <= (K + n * n) / 255
        assert "<TARGET_END>" in rec["noncell_tokens"] and "<PATH_END>" not in rec["noncell_tokens"]


def edge_endpoints_open(mazes, i):
    from mazesearch.data.maze import edge_endpoints

    return edge_endpoints(mazes.grid_n)[mazes.open[i] != 0].tolist()


class _PlantedBridge:
    """Layer 1's residual is the future-path indicator of the sequence (cells named after the
    position, up to <PATH_END>) plus noise; layer 0 is noise alone. run_with_cache mimics TL's."""

    def __init__(self, vocab, n, seed=0):
        from mazesearch.report.explorer import cell_of_token

        self.cell_of, self.n, self.rng = cell_of_token(vocab, n), n, np.random.default_rng(seed)
        self.end = vocab.id("<PATH_END>")
        self.start = vocab.id("<PATH_START>")
        self.cfg = type("cfg", (), {"n_layers": 1, "n_heads": 1})()
        self.W_U = torch.zeros(1)

    def run_with_cache(self, ids, names_filter):
        B, T = ids.shape
        C = self.n * self.n
        planted = np.zeros((B, T, C))
        for b in range(B):
            seq = ids[b].numpy()
            start = int(np.flatnonzero(seq == self.start)[0])
            ends = np.flatnonzero(seq == self.end)
            stop = int(ends[0]) if len(ends) else T
            for t in range(start, stop):
                later = self.cell_of[seq[t + 1:stop]]
                planted[b, t, later[later >= 0]] = 1.0
        noise = lambda: self.rng.normal(size=(B, T, C))  # noqa: E731
        out = {"blocks.0.hook_resid_pre": noise(), "blocks.0.hook_resid_post": planted * 3.0 + 0.3 * noise()}
        return None, {k: torch.from_numpy(v) for k, v in out.items() if k in names_filter}


def test_probes_find_a_planted_future_path_and_not_noise(run):
    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import Vocab, read_tokens
    from mazesearch.report.explorer import fit_future_path_probes

    vocab = Vocab.from_json(run / "data" / "vocab.json")
    mazes = read_mazes(run / "data" / "mazes" / "train.parquet").take(np.arange(200))
    tokens = read_tokens(run / "data" / "tokens" / "train.parquet", vocab).take(np.arange(200))
    bridges = {"trained": _PlantedBridge(vocab, mazes.grid_n), "random_init": _PlantedBridge(vocab, mazes.grid_n, 1)}
    probes, f1 = fit_future_path_probes(bridges, mazes, tokens, vocab.pad_id, C=1.0, max_iter=200,
                                        test_frac=0.25, seed=0, batch_size=64)
    assert len(probes) == 2 and set(f1) == {"trained", "random_init"}
    assert f1["trained"][1] > 0.97  # planted: linearly readable
    assert f1["trained"][0] < 0.75  # noise: about the base rate of a guess
    assert f1["trained"][0] < f1["trained"][1] - 0.2


def _png_chunks(data: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        out.append(data[i + 4:i + 8])
        i += 12 + n
    return out


def test_strip_png_drops_metadata_and_keeps_the_image(run):
    from PIL import Image

    from mazesearch.report.page import strip_png

    raw = (run / "reports" / "eval" / "pictures" / "probe.png").read_bytes()
    assert b"tEXt" in _png_chunks(raw)  # matplotlib's Software entry
    clean = strip_png(raw)
    assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(_png_chunks(clean))
    import io

    a, b = Image.open(io.BytesIO(raw)), Image.open(io.BytesIO(clean))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError):
        strip_png(b"GIF89a....")


def _stage(run, out, *extra):
    return subprocess.run([sys.executable, "-m", "stages.report", *report_args(run, out), *extra],
                          capture_output=True, text=True)


def test_stage_writes_an_offline_deterministic_page(run, tmp_path):
    res = _stage(run, tmp_path / "a")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "a" / "index.html").read_text()
    # offline: no address of another host is loaded (the SVG namespace string is an identifier)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    data = explorer_doc(tmp_path / "a" / "index.html")
    suite = data["suites"][0]
    assert suite["name"] == "probe" and len(suite["mazes"]) == 3
    assert [m["exact"] for m in suite["mazes"]] == [False, False, True]  # failures first (odd rows), up to half
    assert data["probe"]["f1"].keys() == {"trained", "random_init"} and len(data["probe"]["f1"]["trained"]) == 3
    from mazesearch.viz.overlay import scheme

    assert data["style"] == scheme()  # the explorer draws with the pictures' one scheme
    # the cut-short failures (origin, one move, <PATH_END>) go wrong at step 2: <PATH_END> off the target
    assert [m["first_wrong"] for m in suite["mazes"]] == [2, 2, None]
    assets = sorted(p.name for p in (tmp_path / "a" / "assets").iterdir())
    for name in assets:
        assert f"assets/{name}" in page
        assert not {b"tEXt", b"tIME"} & set(_png_chunks((tmp_path / "a" / "assets" / name).read_bytes()))
    # a second run writes the same bytes
    assert _stage(run, tmp_path / "b").returncode == 0
    for rel in ["index.html"] + [f"assets/{n}" for n in assets]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_missing_predictions_leave_a_page_that_says_so(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "data" / "predictions" / "probe.parquet").unlink()
    res = _stage(copy, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert 'id="explorer-data"' not in page
    assert "dvc repro evaluate@probe" in page


def test_a_suite_without_mazes_is_named_and_left_out(run, tmp_path):
    import shutil

    import pandas as pd

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    pred = copy / "data" / "predictions" / "probe.parquet"
    pd.read_parquet(pred).iloc[:0].to_parquet(pred)
    res = _stage(copy, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert 'id="explorer-data"' not in page  # the only suite is empty: no explorer to draw
    assert "No evaluated mazes in: probe." in page


def test_unknown_suite_is_one_error_line_and_nothing_written(run, tmp_path):
    import yaml

    params = yaml.safe_load((run / "params.yaml").read_text())
    params["report"]["suites"] = ["nope"]
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    args = report_args(run, tmp_path / "out")
    args[args.index("--params") + 1] = str(bad)
    res = subprocess.run([sys.executable, "-m", "stages.report", *args], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "report.suites" in lines[0] and "nope" in lines[0]
    assert not (tmp_path / "out").exists()
