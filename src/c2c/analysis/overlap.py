"""`c2c analyze overlap`: how much the joint tokenizer's plan and exec branches share codes (Appendix A.1).

The support-overlap mass of two code distributions is sum_i min(p_i^plan, p_i^exec) per RVQ level, over the
marginal code distributions of the re-encoded plan and exec chunks (``c2c.tokenizer.metrics.overlap_mass``): 0 for
disjoint supports, 1 for equal distributions; the paper reports about 0.16. The chunks are those of
``c2c tokenizer eval`` (``c2c.tokenizer.evaluate.load_saved_split``: the tokenizer's windows and held-out split),
and the tokenizer's own held-out metrics (``c2c.tokenizer.train.evaluate``) are reported beside.

Outputs: ``overlap.json`` and ``code_usage.png`` (one panel per level: plan and exec code frequencies, codes sorted
by their combined frequency).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from c2c.analysis.common import pyplot, save_figure
from c2c.errors import ConfigError
from c2c.paper import OVERLAP_MASS
from c2c.tokenizer.metrics import code_distribution, overlap_mass
from c2c.utils.io import atomic_write_json

PAPER_OVERLAP_MASS = OVERLAP_MASS  # Appendix A.1 (paper.py)
SPLITS = ("heldout", "all")


def code_usage(tokenizer: Any, exec_chunks: np.ndarray, plans: np.ndarray, max_chunks: int = 20000
               ) -> dict[str, np.ndarray]:
    """(R, K) marginal code distributions per level of the re-encoded exec chunks and plans."""
    return {mode: code_distribution(tokenizer.encode(chunks[:max_chunks], mode), tokenizer.codebook_size)
            for mode, chunks in (("exec", exec_chunks), ("plan", plans))}


def analyze_overlap(tokenizer_dir: Path, dataset_dir: Path | None, out: Path, split: str = "heldout",
                    max_chunks: int = 20000) -> dict[str, Any]:
    """Overlap mass per level, code-usage histograms and the tokenizer's held-out metrics."""
    from c2c.tokenizer.evaluate import load_saved_split
    from c2c.tokenizer.train import evaluate

    tokenizer_dir, out = Path(tokenizer_dir), Path(out)
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not tokenizer_dir.is_dir():
        raise ConfigError(f"{tokenizer_dir}: tokenizer directory does not exist")
    if dataset_dir is not None:
        _check_dataset_fits(tokenizer_dir, Path(dataset_dir))
    tokenizer, train, held, dataset = load_saved_split(tokenizer_dir, dataset_dir)
    if "plan" not in tokenizer.modes:
        raise ConfigError(f"{tokenizer_dir}: a {tokenizer.variant!r} tokenizer has no plan mode, so no plan/exec "
                          "overlap (use the joint tokenizer)")
    chunks = held if split == "heldout" else None
    exec_chunks = held.exec_chunks if chunks is not None else np.concatenate([train.exec_chunks, held.exec_chunks])
    plans = held.plans if chunks is not None else np.concatenate([train.plans, held.plans])
    if not len(exec_chunks):
        raise ConfigError(f"{dataset}: no {split} windows to encode (the tokenizer holds out no episode of it)")
    usage = code_usage(tokenizer, exec_chunks, plans, max_chunks)
    # Separate codecs have disjoint vocabularies: the same code index is another token, so nothing is shared.
    shared = tokenizer.shares_vocabulary
    mass = overlap_mass(usage["plan"], usage["exec"]) if shared else np.zeros(tokenizer.num_levels)
    metrics = evaluate(tokenizer, held if len(held.exec_chunks) else train, max_chunks=max_chunks)
    result = {
        "tokenizer": str(tokenizer_dir), "variant": tokenizer.variant, "dataset": str(dataset), "split": split,
        "chunks": int(min(len(exec_chunks), max_chunks)), "codebook_size": tokenizer.codebook_size,
        "levels": tokenizer.num_levels, "shares_vocabulary": shared,
        "overlap_mass": [float(m) for m in mass], "overlap_mass_mean": float(np.mean(mass)),
        "paper_overlap_mass": PAPER_OVERLAP_MASS,
        "codes_used": {mode: (dist > 0).sum(axis=1).tolist() for mode, dist in usage.items()},
        "codes_used_by_both": ((usage["plan"] > 0) & (usage["exec"] > 0)).sum(axis=1).tolist(),
        "tokenizer_metrics": {key: value for key, value in metrics.items() if not key.endswith("chunks_per_s")},
    }
    out.mkdir(parents=True, exist_ok=True)
    result["figure"] = str(plot_code_usage(usage, mass, out / "code_usage.png", tokenizer.variant))
    atomic_write_json(out / "overlap.json", result)
    return result


def _check_dataset_fits(tokenizer_dir: Path, dataset_dir: Path) -> None:
    import json

    from c2c.analysis.common import open_dataset

    dataset = open_dataset(dataset_dir)
    config_path = tokenizer_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: missing (not a saved tokenizer directory)")
    expected = json.loads(config_path.read_text()).get("codec", {}).get("action_dim")
    found = int(np.prod(dataset.features["action"]["shape"]))
    if expected is not None and found != expected:
        raise ConfigError(f"{dataset_dir}: actions have {found} dims but tokenizer {tokenizer_dir} encodes "
                          f"{expected}-dim actions")


def plot_code_usage(usage: dict[str, np.ndarray], mass: np.ndarray, path: Path, variant: str) -> Path:
    """One panel per level: plan and exec code frequencies over the codes either uses, most used first."""
    plt = pyplot()
    levels = usage["exec"].shape[0]
    fig, axes = plt.subplots(1, levels, figsize=(4.2 * levels, 3.3), squeeze=False)
    for level, ax in enumerate(axes[0]):
        plan, exe = usage["plan"][level], usage["exec"][level]
        order = np.argsort(-(plan + exe), kind="stable")
        used = order[(plan + exe)[order] > 0]
        ranks = np.arange(len(used))
        ax.bar(ranks, exe[used], width=1.0, color="tab:blue", alpha=0.55, label="exec")
        ax.bar(ranks, plan[used], width=1.0, color="tab:orange", alpha=0.55, label="plan")
        ax.bar(ranks, np.minimum(plan, exe)[used], width=1.0, color="black", alpha=0.8, label="min (shared)")
        ax.set_title(f"level {level + 1}: overlap mass {mass[level]:.3f}", fontsize=9)
        ax.set_xlabel(f"code rank ({len(used)} codes used by either)")
        ax.set_ylabel("frequency")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"plan vs exec code usage ({variant} tokenizer; paper: overlap about {PAPER_OVERLAP_MASS})",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
