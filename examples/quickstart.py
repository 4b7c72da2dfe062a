# %% [markdown]
# # mazesearch quickstart
#
# Load a finished run (the repository after `dvc repro`), read one maze as the model sees it,
# compare the model's path with the true one, and draw where one attention head looks.
#
# As a script: `python examples/quickstart.py [RUN_DIR] [OUT_PNG]` (or set `MAZESEARCH_RUN`,
# `MAZESEARCH_OUT`; defaults `.` and `quickstart.png`). In VS Code's Jupyter extension the `# %%`
# lines are cells (an .ipynb needs jupytext, not installed here). docs/notebook.md explains it.

# %%
import os
import sys

from mazesearch.notebook import load_run
from mazesearch.notebook.draw import save_figure

args = [] if "ipykernel" in sys.modules else sys.argv[1:]  # a kernel's argv is its own
root = args[0] if args else os.environ.get("MAZESEARCH_RUN", ".")
out = args[1] if len(args) > 1 else os.environ.get("MAZESEARCH_OUT", "quickstart.png")
try:
    run = load_run(root)  # model (TransformerLens, with tokenizer), vocab, mazes, tokens, predictions
except (FileNotFoundError, ValueError) as exc:  # one line naming the file, exit 2, as the stages do
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)
print(run)

# %% [markdown]
# ## One maze, token by token
# `str_tokens` is TransformerLens' own `model.to_str_tokens`; `roles` says what each position is.

# %%
i = 0
print(" ".join(run.str_tokens(i)))
roles = run.roles(i)
print(roles.to_string(max_rows=16))

# %% [markdown]
# ## The model's path against the true one

# %%
true_path = " ".join(run.str_tokens(i)[run.tokens.prompt_len[i]:])
generated = " ".join(run.model.to_str_tokens(run.generate(i)))  # greedy, TransformerLens' generate
pred = run.prediction(i)  # what stage evaluate wrote (None if this dataset was not evaluated)
print(f"true path:  {true_path}")
print(f"generate:   {generated}")
if pred is not None:
    print(f"evaluate:   {pred['predicted_text']}  (exact: {pred['exact_path']})")

# %% [markdown]
# ## Where does a head look from the last path cell?
# At the last path cell the model is about to write `<PATH_END>`. Attention is summed over each
# cell's tokens (edges, origin, target, path); the head shown is the one most focused on one cell.

# %%
query = run.position(i, "path")
logits, cache = run.run_with_cache(i, names_filter=lambda name: name.endswith("hook_pattern"))
focus = {(layer, head): run.cell_attention(i, layer, head, query, cache).max()
         for layer in range(run.model.cfg.n_layers) for head in range(run.model.cfg.n_heads)}
layer, head = max(focus, key=focus.get)
print(f"logits {tuple(logits.shape)}; head L{layer}H{head} puts {focus[layer, head]:.2f} of its attention on one cell")
fig = run.draw_attention(i, layer, head, query, cache)
save_figure(fig, out)
print(f"wrote {out}")
