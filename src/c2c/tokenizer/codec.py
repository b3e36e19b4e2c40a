"""The mode-conditioned residual-VQ autoencoder of the joint-mode action tokenizer (Sec. 3.1, Appendix B.4).

Data path for one normalized chunk X (B, H, A) of mode m (0 = exec, 1 = plan):

    P(X): every action dim is cut into H / patch_len temporal patches -> N = (H / patch_len) x A latent
          positions, each holding patch_len values (20 steps -> 2 patches of 10; 2 x 7 = 14 positions for LIBERO)
    encoder Q(., m): patch embedding + position embedding + mode embedding (dim 64) -> transformer -> latent 64
    residual VQ: 3 levels x 4096 codes, one set of codebooks shared by both modes -> codes (B, N, 3)
    decoder D(., m): latent + position + mode embedding -> transformer -> patch values -> (B, H, A)

Loss (Eq. 16-19): L1(X, X_hat) + codebook + beta x commitment, beta = 0.25, levels averaged.

Example::

    codec = RVQCodec(CodecConfig(action_dim=4))
    out = codec(chunks, mode=torch.zeros(len(chunks), dtype=torch.long))
    out.loss.backward()
    codes = codec.encode(chunks, mode)        # (B, 8, 3)
    recon = codec.decode(codes, mode)         # (B, 20, 4)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from c2c.errors import ConfigError
from c2c.tokenizer.rvq import EMAResidualQuantizer, ResidualVectorQuantizer


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of the codec; defaults are the paper's where it fixes them (B.4)."""

    action_dim: int  # A: 7 for LIBERO, 4 for Meta-World
    horizon: int = 20  # steps per chunk in both modes (He = K = 20, B.3)
    patch_len: int = 10  # steps per temporal patch: 20 steps -> 2 patches (B.4)
    latent_dim: int = 64  # codec latent dimension (B.4)
    mode_dim: int = 64  # learned mode embedding dimension (B.4)
    num_modes: int = 2  # 0 = exec, 1 = plan
    num_levels: int = 3  # residual codebooks (B.4)
    codebook_size: int = 4096  # entries per codebook (B.4)
    commitment_weight: float = 0.25  # beta in Eq. 19
    quantizer: str = "gradient"  # "gradient": codebook + commitment losses of Eq. 17-19; "ema": EMA codebooks
    model_dim: int = 128  # transformer width (not fixed by the paper; sized for a 2-core CPU)
    depth: int = 2  # transformer layers in the encoder and in the decoder
    heads: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.horizon % self.patch_len != 0:
            raise ConfigError(f"horizon {self.horizon} is not a multiple of patch_len {self.patch_len}")
        if self.quantizer not in ("gradient", "ema"):
            raise ConfigError(f"quantizer must be 'gradient' or 'ema', got {self.quantizer!r}")
        if self.model_dim % self.heads != 0:
            raise ConfigError(f"model_dim {self.model_dim} is not divisible by heads {self.heads}")

    @property
    def num_patches(self) -> int:
        return self.horizon // self.patch_len

    @property
    def num_positions(self) -> int:
        """Latent positions N = patches x action dims."""
        return self.num_patches * self.action_dim

    def to_dict(self) -> dict:
        return asdict(self)


class CodecOutput(NamedTuple):
    loss: torch.Tensor  # scalar, Eq. 19
    reconstruction: torch.Tensor  # (B, H, A)
    codes: torch.Tensor  # (B, N, R)
    l1: torch.Tensor  # Eq. 16
    commitment: torch.Tensor  # Eq. 17
    codebook: torch.Tensor  # Eq. 18
    latents: torch.Tensor  # (B, N, latent) encoder outputs before quantization


def _transformer(config: CodecConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=config.model_dim,
        nhead=config.heads,
        dim_feedforward=4 * config.model_dim,
        dropout=config.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=config.depth, enable_nested_tensor=False)


class _ModeConditionedStack(nn.Module):
    """Input projection + position embedding + mode embedding -> transformer -> output projection."""

    def __init__(self, config: CodecConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(in_dim, config.model_dim)
        self.position = nn.Parameter(torch.randn(config.num_positions, config.model_dim) * 0.02)  # (N, C)
        self.mode_embedding = nn.Embedding(config.num_modes, config.mode_dim)  # learned, dim 64 (B.4)
        self.mode_project = nn.Linear(config.mode_dim, config.model_dim)
        self.transformer = _transformer(config)
        self.norm = nn.LayerNorm(config.model_dim)
        self.project_out = nn.Linear(config.model_dim, out_dim)

    def forward(self, x: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        h = self.project_in(x) + self.position  # (B, N, C)
        h = h + self.mode_project(self.mode_embedding(mode))[:, None, :]  # (B, 1, C) broadcast over positions
        return self.project_out(self.norm(self.transformer(h)))  # (B, N, out)


class RVQCodec(nn.Module):
    """Mode-conditioned patch autoencoder with a shared residual VQ bottleneck."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _ModeConditionedStack(config, config.patch_len, config.latent_dim)
        self.decoder = _ModeConditionedStack(config, config.latent_dim, config.patch_len)
        quantizer = ResidualVectorQuantizer if config.quantizer == "gradient" else EMAResidualQuantizer
        self.quantizer = quantizer(dim=config.latent_dim, num_levels=config.num_levels, codebook_size=config.codebook_size)

    # P(.): the patch pretransform and its inverse.
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, A) -> (B, N, patch_len), positions ordered patch-major: (patch 0: dims 0..A-1), (patch 1: ...)."""
        return rearrange(x, "b (p l) a -> b (p a) l", l=self.config.patch_len)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, patch_len) -> (B, H, A)."""
        return rearrange(x, "b (p a) l -> b (p l) a", a=self.config.action_dim)

    def _check(self, x: torch.Tensor, mode: torch.Tensor) -> None:
        expected = (self.config.horizon, self.config.action_dim)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ConfigError(f"codec expects chunks of shape (B, {expected[0]}, {expected[1]}), got {tuple(x.shape)}")
        if mode.shape != (x.shape[0],):
            raise ConfigError(f"mode must have shape ({x.shape[0]},), got {tuple(mode.shape)}")

    def encode_latents(self, x: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        self._check(x, mode)
        return self.encoder(self.patchify(x), mode)  # (B, N, latent)

    def forward(self, x: torch.Tensor, mode: torch.Tensor) -> CodecOutput:
        latents = self.encode_latents(x, mode)  # (B, N, latent)
        quantized, codes, vq_losses = self.quantizer(latents)  # (B, N, latent), (B, N, R)
        reconstruction = self.unpatchify(self.decoder(quantized, mode))  # (B, H, A)
        l1 = (reconstruction - x).abs().mean()  # Eq. 16
        loss = l1 + vq_losses["codebook"] + self.config.commitment_weight * vq_losses["commitment"]  # Eq. 19
        return CodecOutput(loss, reconstruction, codes, l1, vq_losses["commitment"], vq_losses["codebook"], latents)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        """(B, H, A) normalized chunks -> (B, N, R) codes."""
        _, codes, _ = self.quantizer(self.encode_latents(x, mode))
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        """(B, N, R) codes -> (B, H, A) normalized chunks."""
        return self.unpatchify(self.decoder(self.quantizer.decode_codes(codes), mode))
