"""Tokenizer diagnostics: reconstruction error, codebook usage and the plan/exec support-overlap mass."""

from __future__ import annotations

import numpy as np


def code_distribution(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(B, N, R) codes -> (R, K) empirical marginal distribution of codes per level."""
    flat = codes.reshape(-1, codes.shape[-1])
    hist = np.stack([np.bincount(flat[:, r], minlength=codebook_size)[:codebook_size] for r in range(flat.shape[1])])
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)


def overlap_mass(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Support-overlap mass sum_i min(p_i, q_i) along the last axis: 0 for disjoint supports, 1 for equal ones."""
    return np.minimum(p, q).sum(axis=-1)


def usage_fraction(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Fraction of each level's codebook used at least once in (B, N, R) codes."""
    flat = codes.reshape(-1, codes.shape[-1])
    return [float(len(np.unique(flat[:, r]))) / codebook_size for r in range(flat.shape[1])]


def perplexity(codes: np.ndarray, codebook_size: int) -> list[float]:
    """exp(entropy) of each level's code distribution: the effective number of codes in use."""
    dist = code_distribution(codes, codebook_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(dist > 0, dist * np.log(dist), 0.0), axis=1)
    return np.exp(entropy).tolist()
