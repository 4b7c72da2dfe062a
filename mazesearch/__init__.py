"""mazesearch: do small transformers learn to search? Mazes -> tokens -> models -> evals -> internals.

Subpackages follow the DAG, each importing only those before it: data, viz, model, evaluation,
interp, report (plus io.py and params/ at the base; README "Layout").
"""
