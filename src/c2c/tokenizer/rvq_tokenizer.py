"""The joint-mode residual-VQ action tokenizer (paper Sec. 3.1, Appendix B.4) and its two ablation variants.

Variants, one interface:

- ``joint`` (default): one mode-conditioned codec; plan (m = 1) and exec (m = 0) chunks share its codebooks.
- ``exec-only``: one codec trained on executable chunks only, for the no-plan Faster-AR baseline (Hp = 0).
- ``separate``: two independently trained codecs, one per mode; their vocabularies are disjoint (Table 4).

Example::

    tok = RVQTokenizer.from_pretrained("runs/tok")
    codes = tok.encode(exec_chunks, "exec")      # (B, 8, 3) for 4-dim actions
    actions = tok.decode(codes, "exec")          # (B, 20, 4) in dataset units
    ids = tok.token_ids(codes, "plan")           # (B, 8, 3) ids in the tokenizer's flat vocabulary
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from c2c.data.normalize import ActionNormalizers, QuantileNormalizer
from c2c.errors import ConfigError
from c2c.tokenizer.base import MODE_INDEX, ActionTokenizer, DecodeReport, Mode, check_actions, check_mode
from c2c.tokenizer.codec import CodecConfig, RVQCodec
from c2c.utils.io import atomic_write_json
from c2c.utils.weights import WEIGHTS_KEY, check_finite, commit_staging, sha256_file, staging_dir, verify_digest

Variant = Literal["joint", "exec-only", "separate"]
VARIANTS: tuple[str, ...] = ("joint", "exec-only", "separate")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class RVQTokenizer(ActionTokenizer):
    """Residual-VQ action tokenizer over normalized chunks; owns its normalization statistics."""

    name = "rvq"

    def __init__(self, config: CodecConfig, normalizers: ActionNormalizers, variant: Variant = "joint") -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown tokenizer variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if variant != "exec-only" and normalizers.plan is None:
            raise ConfigError(f"variant {variant!r} needs plan statistics (the dataset windows had no plan)")
        self.config = config
        self.normalizers = normalizers
        self.variant = variant
        # "joint" and "exec-only": one codec; "separate": one codec per mode.
        self.codecs = torch.nn.ModuleDict({"shared": RVQCodec(config)} if variant != "separate" else {
            "exec": RVQCodec(config), "plan": RVQCodec(config)})

    # --- interface -------------------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def num_levels(self) -> int:
        return self.config.num_levels

    @property
    def modes(self) -> tuple[Mode, ...]:
        return ("exec",) if self.variant == "exec-only" else ("exec", "plan")

    @property
    def shares_vocabulary(self) -> bool:
        return self.variant == "joint"

    @property
    def vocabulary_size(self) -> int:
        """Distinct token ids: every level has its own codebook; separate codecs do not share ids."""
        per_codec = self.num_levels * self.codebook_size
        return 2 * per_codec if self.variant == "separate" else per_codec

    def tokens_per_chunk(self, mode: Mode = "exec") -> int:
        return self.config.num_positions * self.num_levels

    def codec(self, mode: Mode) -> RVQCodec:
        check_mode(mode)
        if mode not in self.modes:
            raise ConfigError(f"the {self.variant!r} tokenizer has no {mode!r} mode")
        return self.codecs["shared"] if "shared" in self.codecs else self.codecs[mode]

    def normalizer(self, mode: Mode) -> QuantileNormalizer:
        return self.normalizers.action if mode == "exec" else self.normalizers.plan  # type: ignore[return-value]

    def _modes_tensor(self, mode: Mode, batch: int) -> torch.Tensor:
        return torch.full((batch,), MODE_INDEX[mode], dtype=torch.long)

    def encode(self, actions: np.ndarray, mode: Mode = "exec") -> np.ndarray:
        codec = self.codec(mode)
        actions = check_actions(actions, self.config.horizon, self.config.action_dim, mode, "rvq tokenizer")
        x = torch.from_numpy(self.normalizer(mode).normalize(actions))  # (B, H, A) in [-1, 1]
        codec.eval()
        return codec.encode(x, self._modes_tensor(mode, len(x))).numpy().astype(np.int64)  # (B, N, R)

    def decode(self, codes: np.ndarray, mode: Mode = "exec", *, return_report: bool = False):
        codec = self.codec(mode)
        codes = np.asarray(codes)
        expected = (self.config.num_positions, self.num_levels)
        if codes.ndim != 3 or tuple(codes.shape[1:]) != expected:
            raise ConfigError(f"rvq tokenizer: codes must have shape (B, {expected[0]}, {expected[1]}), got {codes.shape}")
        invalid = (codes < 0) | (codes >= self.codebook_size)  # (B, N, R)
        if invalid.any() and not return_report:
            sample, position, level = (int(i) for i in np.argwhere(invalid)[0])
            raise ConfigError(
                f"rvq tokenizer: code {int(codes[sample, position, level])} at sample {sample}, position {position}, "
                f"level {level} is outside [0, {self.codebook_size}) ({int(invalid.sum())} such codes); "
                "pass return_report=True to decode the valid codes and get a report instead"
            )
        # Decode what is valid: an out-of-range code contributes nothing at its level (its residual is dropped).
        safe = torch.from_numpy(np.where(invalid, 0, codes).astype(np.int64))
        codec.eval()
        with torch.no_grad():
            latents = codec.quantizer.decode_codes(safe)  # (B, N, latent)
            if invalid.any():
                dropped = codec.quantizer.codebooks[torch.arange(self.num_levels), 0]  # (R, latent)
                latents = latents - torch.from_numpy(invalid.astype(np.float32)) @ dropped
            normalized = codec.unpatchify(codec.decoder(latents, self._modes_tensor(mode, len(codes))))
        actions = self.normalizer(mode).unnormalize(normalized.numpy())
        if not return_report:
            return actions
        counts = invalid.reshape(len(codes), -1).sum(axis=1)
        report = DecodeReport(invalid_tokens=counts, repaired=counts > 0,
                              messages=[f"sample {i}: {c} out-of-range codes dropped" for i, c in enumerate(counts) if c])
        return actions, report

    def token_ids(self, codes: np.ndarray, mode: Mode) -> np.ndarray:
        """Codes (B, N, R) -> ids in [0, vocabulary_size): level r code k -> r K + k (+ R K for separate plans)."""
        offsets = np.arange(self.num_levels) * self.codebook_size  # (R,)
        if self.variant == "separate" and mode == "plan":
            offsets = offsets + self.num_levels * self.codebook_size
        return np.asarray(codes) + offsets

    # --- persistence -----------------------------------------------------------------------------------------
    def same_as(self, other: object) -> bool:
        """Whether ``other`` is the same tokenizer: variant, codec settings, statistics and codebooks."""
        if not isinstance(other, RVQTokenizer) or (self.variant, self.config.to_dict(), self.normalizers.to_dict()) \
                != (other.variant, other.config.to_dict(), other.normalizers.to_dict()):
            return False
        ours, theirs = self.codecs.state_dict(), other.codecs.state_dict()
        return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Weights and config through a staging folder, the config last with the weights' sha256 (utils.weights)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(directory)
        state = {name: t.detach().contiguous() for name, t in self.codecs.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        atomic_write_json(staging / CONFIG_FILE, {
            "type": self.name,
            "variant": self.variant,
            "codec": self.config.to_dict(),
            "normalizers": self.normalizers.to_dict(),
            WEIGHTS_KEY: {WEIGHTS_FILE: sha256_file(staging / WEIGHTS_FILE)},
        })
        commit_staging(staging, directory, last=CONFIG_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RVQTokenizer":
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ConfigError(f"{path}: missing (not a saved tokenizer directory)")
        try:
            raw = json.loads(config_path.read_text())
            config = CodecConfig(**raw["codec"])
            tokenizer = cls(config, ActionNormalizers.from_dict(raw["normalizers"]), raw.get("variant", "joint"))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{config_path}: malformed tokenizer config ({err})") from None
        verify_digest(weights_path, raw.get(WEIGHTS_KEY))
        try:
            state = load_file(str(weights_path))
            tokenizer.codecs.load_state_dict(state)
        except (RuntimeError, OSError, SafetensorError) as err:
            raise ConfigError(f"{weights_path}: weights do not match the config ({str(err).splitlines()[0]})") from None
        check_finite(state, weights_path)
        tokenizer.codecs.eval()
        return tokenizer
