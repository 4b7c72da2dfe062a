"""The command line shared by the stages that read a trained run (heads, geometry, logit_lens, dla)."""

import argparse


def model_run_parser(doc: str | None, out_dir: str) -> argparse.ArgumentParser:
    """--params, --model-dir, --tokens-dir, --mazes-dir, --vocab (this repo's layout) and --out-dir;
    a stage adds its own options before parsing."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--tokens-dir", default="data/tokens")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default=out_dir)
    return ap


def stage_device(spec, section: str):
    """``<section>.num_threads`` applied and ``<section>.device`` resolved (StageError naming the key)."""
    from mazesearch.io import StageError
    from mazesearch.model.device import resolve_device, set_threads

    set_threads(spec.num_threads)
    try:
        return resolve_device(spec.device, f"{section}.device")
    except ValueError as exc:
        raise StageError(str(exc)) from None
