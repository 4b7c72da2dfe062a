"""A TopK sparse autoencoder on cached activations (Gao et al. 2024, "Scaling and evaluating
sparse autoencoders"), in plain PyTorch.

``codes = ReLU(TopK((x*scale - b_dec) @ W_enc + b_enc))`` keeps only the k largest
pre-activations per row, so sparsity is exact (L0 <= k) with no L1 penalty to tune and no
shrinkage of the active codes; ``x_hat = (codes @ W_dec + b_dec) / scale``. Decoder rows are unit
vectors (the gradient along each row is projected out before every Adam step and the rows are
renormalised after it), so a feature's size lives in its code and ``direction(f)`` is comparable
across features. Inputs are scaled so the mean squared row norm is ``d_in`` (``scale`` is stored:
the module takes and returns raw activations). An optional AuxK loss (the paper's fix for dead
latents) asks the top ``aux_k`` dead latents to reconstruct the main residual.

Metrics: ``fvu`` (fraction of variance unexplained: 0 perfect, 1 = predicting the mean) is the
scale-free reconstruction error; ``l0`` checks the sparsity actually used; ``dead_frac`` counts
features that never fire. ``match_features`` asks whether a label (an open edge, a target cell)
has one feature that separates it, by AUROC of the raw activation (rank-based, so free of scale).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from mazesearch.io import InputError, read_json, write_bytes_atomic

WEIGHTS_FILE, CONFIG_FILE = "sae.safetensors", "sae_config.json"


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    d_in: int
    n_features: int
    k: int                   # active features per row (TopK)
    steps: int
    batch_size: int
    lr: float
    seed: int
    aux_coef: float = 1 / 32  # weight of the AuxK loss; 0 turns it off
    aux_k: int | None = None  # dead latents used by AuxK (None: d_in // 2)
    dead_steps: int = 200     # a latent silent for this many minibatches counts as dead


class TopKSAE(torch.nn.Module):
    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if not 0 < cfg.k <= cfg.n_features:
            raise ValueError(f"need 0 < k <= n_features, got k={cfg.k}, n_features={cfg.n_features}")
        self.cfg = cfg
        d, F = cfg.d_in, cfg.n_features
        self.W_enc = torch.nn.Parameter(torch.zeros(d, F))   # [d_in, F]
        self.b_enc = torch.nn.Parameter(torch.zeros(F))      # [F]
        self.W_dec = torch.nn.Parameter(torch.zeros(F, d))   # [F, d_in], unit rows
        self.b_dec = torch.nn.Parameter(torch.zeros(d))      # [d_in], in scaled units
        self.register_buffer("scale", torch.ones(()))       # raw -> scaled multiplier

    def pre_acts(self, xs: torch.Tensor) -> torch.Tensor:
        """Scaled input ``[N, d_in]`` -> pre-activations ``[N, F]``."""
        return (xs - self.b_dec) @ self.W_enc + self.b_enc

    def _topk(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        """``[N, F]`` -> ``[N, F]``: ReLU of the k largest entries per row, zeros elsewhere."""
        vals, idx = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, vals.relu())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw activations ``[N, d_in]`` -> sparse codes ``[N, F]``, >= 0, at most k nonzero per
        row, in scaled units (a code times ``direction(f) / scale`` is its raw-space part)."""
        return self._topk(self.pre_acts(x * self.scale), self.cfg.k)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[N, F]`` -> raw-scale reconstruction ``[N, d_in]``."""
        return (codes @ self.W_dec + self.b_dec) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def direction(self, feature: int) -> torch.Tensor:
        """Unit decoder row ``[d_in]`` of ``feature`` (scaling is isotropic: also the raw-space direction)."""
        return self.W_dec[feature].detach().clone()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _as_tensor(X) -> torch.Tensor:
    X = X.float() if torch.is_tensor(X) else torch.from_numpy(np.asarray(X, dtype=np.float32))
    if X.ndim != 2:
        raise ValueError(f"expected activations [N, d_in], got shape {tuple(X.shape)}")
    return X


def train_sae(X: np.ndarray | torch.Tensor, cfg: SAEConfig) -> tuple[TopKSAE, dict]:
    """Fit a TopK SAE to ``X`` ``float32 [N, d_in]`` with Adam; ``cfg.steps`` minibatches drawn
    epoch by epoch from a ``torch.Generator`` seeded with ``cfg.seed`` (also the init): same cfg
    and data give identical weights. ``steps=0`` returns the initialised (untrained) SAE.

    history: ``step``, ``loss`` (MSE per element, scaled units), ``aux_loss``, ``fvu`` (of that
    minibatch) every ``max(1, steps // 20)`` steps and at the last; ``dead_frac`` at the end
    (latents silent for the last ``dead_steps`` minibatches; NaN when steps=0).
    """
    X = _as_tensor(X).cpu()
    N, d = X.shape
    if d != cfg.d_in or N == 0:
        raise ValueError(f"need X [N > 0, d_in={cfg.d_in}], got shape {tuple(X.shape)}")
    gen = torch.Generator().manual_seed(cfg.seed)
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.scale.fill_(float(np.sqrt(d / max((X.double() ** 2).sum(1).mean().item(), 1e-30))))
        Xs = X * sae.scale                                   # [N, d_in], mean squared norm d_in
        sae.b_dec.copy_(Xs.mean(0))                          # cheap stand-in for the geometric median
        sae.W_dec.copy_(torch.randn(cfg.n_features, d, generator=gen))
        sae.normalize_decoder_()
        sae.W_enc.copy_(sae.W_dec.T)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    B = min(cfg.batch_size, N)
    aux_k = cfg.aux_k if cfg.aux_k is not None else max(1, d // 2)
    silent = torch.zeros(cfg.n_features, dtype=torch.long)   # [F] minibatches since last firing
    log_every = max(1, cfg.steps // 20)
    hist: dict = {"step": [], "loss": [], "aux_loss": [], "fvu": []}
    perm, pos = torch.randperm(N, generator=gen), 0
    for step in range(cfg.steps):
        if pos + B > N:
            perm, pos = torch.randperm(N, generator=gen), 0
        xs = Xs[perm[pos:pos + B]]                           # [B, d_in]
        pos += B
        pre = sae.pre_acts(xs)                               # [B, F]
        codes = sae._topk(pre, cfg.k)                        # [B, F]
        err = xs - (codes @ sae.W_dec + sae.b_dec)           # [B, d_in]
        loss = err.pow(2).mean()
        fired = (codes > 0).any(0)
        silent = torch.where(fired, 0, silent + 1)
        dead = silent > cfg.dead_steps                       # [F]
        aux = torch.zeros(())
        if cfg.aux_coef > 0 and bool(dead.any()):
            aux_codes = sae._topk(pre.masked_fill(~dead, -torch.inf), min(aux_k, int(dead.sum())))
            aux = (err.detach() - aux_codes @ sae.W_dec).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        (loss + cfg.aux_coef * aux).backward()
        with torch.no_grad():  # keep the decoder step tangent to the unit sphere, then renormalise
            g, W = sae.W_dec.grad, sae.W_dec
            g -= (g * W).sum(1, keepdim=True) * W
        opt.step()
        sae.normalize_decoder_()
        if step % log_every == 0 or step == cfg.steps - 1:
            var = (xs - xs.mean(0)).pow(2).sum().item()
            fvu = err.detach().pow(2).sum().item() / var if var > 0 else float("nan")
            for key, value in zip(hist, (step, loss.item(), aux.item(), fvu)):
                hist[key].append(value)
    hist["dead_frac"] = float(dead.float().mean()) if cfg.steps else float("nan")
    sae.eval()
    return sae, hist


@torch.no_grad()
def sae_codes(sae: TopKSAE, X, batch: int = 8192) -> np.ndarray:
    """``float32 [N, F]`` codes of raw activations ``X [N, d_in]``, computed in chunks."""
    X = _as_tensor(X)
    return np.concatenate([sae.encode(X[i:i + batch]).numpy() for i in range(0, len(X), batch)]
                          or [np.zeros((0, sae.cfg.n_features), np.float32)])


@torch.no_grad()
def sae_metrics(sae: TopKSAE, X, batch: int = 8192) -> dict:
    """``fvu`` = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, ``l0`` (mean nonzero codes per
    row), ``dead_frac`` (features never active on X), ``n_rows``; float64 sums, raw scale."""
    X = _as_tensor(X)
    mean = X.double().mean(0)
    sq_err = sq_var = nonzero = 0.0
    ever = torch.zeros(sae.cfg.n_features, dtype=torch.bool)
    for i in range(0, len(X), batch):
        x = X[i:i + batch]                                   # [b, d_in]
        codes = sae.encode(x)                                # [b, F]
        sq_err += (x.double() - sae.decode(codes).double()).pow(2).sum().item()
        sq_var += (x.double() - mean).pow(2).sum().item()
        nonzero += (codes != 0).sum().item()
        ever |= (codes != 0).any(0)
    n = len(X)
    return {"fvu": sq_err / sq_var if sq_var > 0 else float("nan"), "l0": nonzero / n if n else float("nan"),
            "dead_frac": float((~ever).float().mean()), "n_rows": n}


def feature_aurocs(codes: np.ndarray, labels: np.ndarray, chunk_elems: int = 1 << 24) -> np.ndarray:
    """``float64 [L, F]``: AUROC of each feature's activation (codes ``[N, F]``) for each label
    (bool ``[N, L]``), by the rank-sum (Mann-Whitney) formula with tied values at their average
    rank, so equal to sklearn's roc_auc_score; a feature constant on the rows (never active) is
    0.5. Rows of a constant label are NaN."""
    codes, labels = np.asarray(codes), np.asarray(labels, dtype=bool)
    (N, F), L = codes.shape, labels.shape[1]
    if labels.shape[0] != N:
        raise ValueError(f"codes have {N} rows, labels {labels.shape[0]}")
    n_pos = labels.sum(0).astype(np.float64)                 # [L]
    n_neg = N - n_pos
    out = np.full((L, F), np.nan)
    ok = (n_pos > 0) & (n_neg > 0)
    step = max(1, chunk_elems // max(N, 1))
    lab = labels[:, ok].T.astype(np.float64)                 # [L_ok, N]
    for j in range(0, F, step):
        ranks = scipy.stats.rankdata(codes[:, j:j + step], axis=0)   # [N, f]
        rank_sum = lab @ ranks                                        # [L_ok, f]
        out[ok, j:j + step] = (rank_sum - (n_pos[ok] * (n_pos[ok] + 1) / 2)[:, None]) / (n_pos * n_neg)[ok, None]
    return out


def match_features(codes: np.ndarray, labels, names=None) -> dict:
    """For each label column, the feature that best separates it: the largest ``|AUROC - 0.5|``
    (ties: the higher AUROC, then the lower index). ``{label: None | {"feature", "auroc",
    "sign" (+1 fires when the label is true, -1 when false), "mean_true", "mean_false"}}``, keyed
    by ``names`` (default: a DataFrame's columns, else the column index); None for constant labels."""
    if names is None:
        names = list(labels.columns) if hasattr(labels, "columns") else list(range(np.shape(labels)[1]))
    codes, labels = np.asarray(codes), np.asarray(labels, dtype=bool)
    auc = feature_aurocs(codes, labels)                      # [L, F]
    out: dict = {}
    for l, name in enumerate(names):
        if np.isnan(auc[l]).all():
            out[name] = None
            continue
        score = np.abs(auc[l] - 0.5)
        cand = np.flatnonzero(score >= score.max() - 1e-12)
        f = int(cand[np.argmax(auc[l, cand])])
        y = labels[:, l]
        out[name] = {"feature": f, "auroc": float(auc[l, f]), "sign": 1 if auc[l, f] >= 0.5 else -1,
                     "mean_true": float(codes[y, f].mean()), "mean_false": float(codes[~y, f].mean())}
    return out


def save_sae(sae: TopKSAE, path: str | Path) -> None:
    """Write ``path/sae.safetensors`` (float32 weights + scale) and ``path/sae_config.json``."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in sorted(sae.state_dict().items())}
    write_bytes_atomic(path / WEIGHTS_FILE, save(state))
    config = json.dumps(dataclasses.asdict(sae.cfg), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path / CONFIG_FILE, config.encode())


def load_sae(path: str | Path) -> TopKSAE:
    """Read what :func:`save_sae` wrote (bit-exact); InputError naming the file when it is bad."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        cfg = SAEConfig(**read_json(cfg_path, "SAE config"))
    except TypeError as exc:
        raise InputError(cfg_path, f"is not an SAE config ({exc})") from None
    sae = TopKSAE(cfg)
    try:
        sae.load_state_dict(load_file(w_path), strict=True)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # missing, not safetensors, misfit
        raise InputError(w_path, f"is not the weights of this SAE config ({exc})") from None
    return sae.eval()
