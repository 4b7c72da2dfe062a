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
