"""Stage geometry: are the coordinate tokens laid out like the lattice, and do heads use it?

Reads models/ (model_config.json + model.safetensors), data/vocab.json, the first
``geometry.n_mazes`` rows of data/{tokens,mazes}/<geometry.dataset>.parquet and, with
``--heads-scores``, the heads stage's scores.csv (the top ``geometry.top_heads``
lattice-adjacency heads). Params also read: ``datasets.train.grid_n`` (the cells analysed: every
coordinate token of the training lattice) and ``tokenizer.coord``. Writes (``<out>.tmp`` then
renamed):

    metrics.json        headline (DVC metric): ``spearman`` (embedding distance vs lattice
                        distance) trained / random-init control with permutation p-values; per
                        circuit (ov_embed, ov_unembed, qk) the fraction of cells whose best other
                        cell is a lattice neighbour for the top lattice heads, trained and control;
                        ``svd``: the top lattice heads' SVD lattice alignment (mean over their OV
                        and QK of the best ANOVA R^2 by row or column of a top-``svd_top_k``
                        singular direction), trained / random_init / spectrum_matched. Top-head
                        numbers are null without --heads-scores
    details.json        n_cells, Euclidean and cosine Spearman, PCA variance, every head's circuit
                        scores (neighbour_top1, neighbour_auroc, self_top1) in both models, per
                        circuit the chance and the best head (trained, control), every weight
                        matrix's SVD alignment per side and direction in the three roles, the
                        residual picture's labels
    embedding_pca.png   cell embeddings in 2-D, labelled (r,c), trained beside random-init
    residual_pca.png    last residual stream at path positions in 2-D, coloured by current cell
                        and by whether one cell is still ahead on the path, both models
    svd.png             every head's OV, QK and every MLP's in, out alignment per layer, trained
                        beside random-init beside spectrum-matched

The control is ``GPT(same config, seed=geometry.control_seed)`` (docs/interp.md).
"""

from __future__ import annotations

from pathlib import Path

from mazesearch.data.tokens import Vocab
from mazesearch.model.run_loader import control_model, first_rows, load_trained
from mazesearch.io import InputError, StageError, atomic_dir, stage_main
from mazesearch.params import GeometrySpec, load_params_or_exit
from stages._run_args import model_run_parser


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/geometry")
    ap.add_argument("--heads-scores", default=None, help="reports/heads/scores.csv: headline the top "
                    "lattice-adjacency heads' circuits (without it: best head over all heads only)")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = params.geometry or GeometrySpec()
    grid_n, coord = params.datasets["train"].grid_n, params.tokenizer.coord
    vocab = Vocab.from_json(args.vocab)
    if grid_n > vocab.max_grid_n:
        raise InputError(args.vocab, f"covers grids up to {vocab.max_grid_n}x{vocab.max_grid_n}, "
                         f"not datasets.train.grid_n={grid_n}", "re-run `dvc repro vocab`")
    n = spec.n_mazes
    tokens, mazes = first_rows("geometry", spec.dataset, n, tokens_dir=args.tokens_dir, mazes_dir=args.mazes_dir,
                               vocab=vocab)

    from mazesearch.interp.geometry_report import (
        circuit_section, embedding_section, read_top_heads, residual_section, write_outputs,
    )
    from mazesearch.interp.weight_svd import svd_section

    top_heads = None if args.heads_scores is None else read_top_heads(Path(args.heads_scores), spec.top_heads)
    trained, device = load_trained("geometry", spec, model_dir=args.model_dir, vocab=vocab, vocab_path=args.vocab)
    models = {"trained": trained, "random": control_model(trained, spec.control_seed)}
    if any(l >= trained.cfg.n_layers or h >= trained.cfg.n_heads for l, h in top_heads or []):
        raise InputError(args.heads_scores, "names heads the model does not have", "re-run `dvc repro heads`")
    if int(tokens.lengths.max()) > trained.cfg.n_ctx:
        raise StageError(f"datasets.{spec.dataset} has sequences longer than the model's n_ctx={trained.cfg.n_ctx}")
    print(f"geometry: device {device}, {spec.num_threads} threads, {grid_n}x{grid_n} cells ({coord}), "
          f"{n} mazes of {spec.dataset}")

    embedding, emb_points = embedding_section(models, vocab, grid_n, coord, spec.n_permutations, spec.seed)
    circuits = circuit_section(models, vocab, grid_n, coord, top_heads)
    svd = svd_section(models, vocab, grid_n, coord, spec.svd_top_k, spec.seed, top_heads)
    try:
        residual, resid = residual_section(models, tokens, mazes, vocab, spec.batch_size)
    except ValueError as exc:
        raise InputError(Path(args.tokens_dir) / f"{spec.dataset}.parquet", str(exc),
                         f"re-run `dvc repro tokenize@{spec.dataset}`") from None
    details = {"grid_n": grid_n, "coord": coord, "n_cells": grid_n**2, "dataset": spec.dataset, "n_mazes": n,
               "control_seed": spec.control_seed, "n_permutations": spec.n_permutations,
               "embedding": embedding, "circuits": circuits, "svd": svd, "residual": residual}
    with atomic_dir(args.out_dir) as out:
        metrics = write_outputs(details, emb_points, resid, grid_n, mazes.grid_n, out)
    s = metrics["spearman"]
    print(f"geometry: Spearman trained {s['trained']}, random-init {s['control']}")
    for c in ("ov_embed", "ov_unembed", "qk"):
        print(f"geometry: {c} neighbour top-1 {metrics[c]}")
    print(f"geometry: SVD lattice alignment, top heads {metrics['svd']}")


if __name__ == "__main__":
    stage_main(main)
