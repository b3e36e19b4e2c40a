"""A small convolutional image encoder with the SigLIP tower's interface, for CPU-scale backbones.

The paper's backbone sees images through PaliGemma's pretrained SigLIP-So400m. The CPU-scale presets train from
scratch on a few thousand frames, where a ViT's 4 x 4 patch grid has little spatial prior: the target of reach or
the puck of pick-place covers a few pixels of one patch. ``ConvVisionTower`` replaces the ViT with four
convolutions (overall stride 8) and a patchify convolution to the same token grid, so every other part of the
policy (projector, token layout, checkpoints) is unchanged. It is an option of the non-pretrained presets
(``BackbonePreset.vision_encoder = "conv"``), never used by the pretrained ones.

Example::

    tower = ConvVisionTower(image_size=96, patch_size=24, hidden_size=96)
    tower(torch.zeros(2, 3, 96, 96)).last_hidden_state.shape   # (2, 16, 96)
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from c2c.errors import ConfigError

VISION_ENCODERS = ("siglip", "conv", "keypoints")
STRIDE = 8  # three stride-2 convolutions before the patchify convolution


def _block(inputs: int, outputs: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.GroupNorm(min(8, outputs), outputs), nn.GELU())


class ConvVisionTower(nn.Module):
    """(N, 3, H, W) images in [-1, 1] -> ``BaseModelOutput(last_hidden_state=(N, (H / patch)^2, hidden))``."""

    def __init__(self, image_size: int, patch_size: int, hidden_size: int,
                 channels: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if patch_size % STRIDE or image_size % patch_size:
            raise ConfigError(f"the conv vision encoder needs a patch size that is a multiple of {STRIDE} and "
                              f"divides the image size (got patch {patch_size}, image {image_size})")
        first, second, third = channels
        self.features = nn.Sequential(
            _block(3, first, 5, 2), _block(first, second, 3, 2), _block(second, third, 3, 2),
            _block(third, third, 3, 1))
        window = patch_size // STRIDE
        self.patchify = nn.Conv2d(third, hidden_size, window, stride=window)
        tokens = (image_size // patch_size) ** 2
        self.position = nn.Parameter(torch.zeros(1, tokens, hidden_size))
        self.norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, pixel_values: torch.Tensor, **_: object) -> BaseModelOutput:
        grid = self.patchify(self.features(pixel_values))  # (N, D, g, g)
        tokens = grid.flatten(2).transpose(1, 2) + self.position  # (N, g * g, D)
        return BaseModelOutput(last_hidden_state=self.norm(tokens))


class KeypointVisionTower(nn.Module):
    """Convolutions then a spatial softmax (Levine et al. 2016, as robomimic's and Diffusion Policy's image encoders).

    (N, 3, H, W) images in [-1, 1] -> ``BaseModelOutput(last_hidden_state=(N, K, hidden))`` with K = (H / patch)^2,
    the token count of the ViT it replaces. Each of the K keypoint maps (on the stride-4 feature grid, 24 x 24 at
    96 px) is softmax-normalised over the image; its token embeds the expected position (x, y) and the features
    averaged under that softmax, plus a learned per-keypoint embedding. Positions are read at sub-cell precision,
    where a patch grid quantises them to whole patches.
    """

    def __init__(self, image_size: int, patch_size: int, hidden_size: int,
                 channels: tuple[int, int, int] = (16, 32, 32)) -> None:
        super().__init__()
        if image_size % patch_size or image_size % 4:
            raise ConfigError(f"the keypoint vision encoder needs an image size divisible by 4 and by the patch "
                              f"size (got patch {patch_size}, image {image_size})")
        first, second, third = channels
        self.features = nn.Sequential(_block(3, first, 5, 2), _block(first, second, 3, 2),
                                      _block(second, third, 3, 1))
        self.keypoints = (image_size // patch_size) ** 2
        self.maps = nn.Conv2d(third, self.keypoints, 1)
        self.temperature = nn.Parameter(torch.zeros(()))  # log of a learned softmax temperature, starts at 1
        grid = image_size // 4
        axis = torch.linspace(-1.0, 1.0, grid)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)
        self.embed = nn.Linear(2 + third, hidden_size)
        self.identity = nn.Parameter(torch.zeros(1, self.keypoints, hidden_size))
        self.norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.identity, std=0.02)

    def forward(self, pixel_values: torch.Tensor, **_: object) -> BaseModelOutput:
        features = self.features(pixel_values)  # (N, C, g, g)
        weights = torch.softmax(self.maps(features).flatten(2) * self.temperature.exp(), dim=-1)  # (N, K, g * g)
        positions = weights @ self.coords.to(weights.dtype)  # (N, K, 2) expected (x, y) in [-1, 1]
        pooled = weights @ features.flatten(2).transpose(1, 2)  # (N, K, C) features under each keypoint
        tokens = self.embed(torch.cat([positions, pooled], dim=-1)) + self.identity
        return BaseModelOutput(last_hidden_state=self.norm(tokens))


def install_vision_encoder(backbone: nn.Module, encoder: str, seed: int) -> nn.Module:
    """Replace the SigLIP tower of a fresh or rebuilt backbone by ``encoder`` (seeded); ``"siglip"`` keeps it.

    Works on a PaliGemma (``backbone.model.vision_tower``) and on a multi-stream backbone (``backbone.vision_tower``).
    """
    if encoder not in VISION_ENCODERS:
        raise ConfigError(f"vision_encoder: unknown {encoder!r} (expected one of {', '.join(VISION_ENCODERS)})")
    if encoder == "siglip":
        return backbone
    holder = backbone.model if hasattr(getattr(backbone, "model", None), "vision_tower") else backbone
    vision = holder.vision_tower.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        tower = ConvVisionTower if encoder == "conv" else KeypointVisionTower
        holder.vision_tower = tower(vision.image_size, vision.patch_size, vision.hidden_size)
    return backbone
