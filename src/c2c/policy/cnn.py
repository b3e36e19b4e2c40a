"""``cnn``: a plain convolutional chunk regressor, the network of the ``regress`` variant on the ``cnn`` preset.

What it is. No transformer: per camera a small convolutional trunk (four 3 x 3 convolutions of stride 2, each with
GroupNorm and ReLU: 96 px -> a 6 x 6 grid) read out by a spatial softmax (Levine et al. 2016: the expected (x, y) of
K learned feature maps, as in robomimic's and Diffusion Policy's image encoders) and by global average pooling; the
normalised state through a linear layer; the instruction as the mean of learned embeddings of its tokens (the ids of
the policy's instruction tokenizer, padding masked out). These are concatenated and an MLP maps them to the
(He, A) chunk in q01/q99-normalised units. Training and decoding are ``regress``'s: L1 to the normalised chunk,
one forward pass, the chunk clipped to [-1, 1] and unnormalised by ``regress.ContinuousActions``.

Why. A plain CNN that regresses the chunk (REFERENCE.md's calibration point: four stride-2 convolutions with
GroupNorm, state and a task embedding, L1 on a 20-step q01/q99-normalised chunk) scored as well as the token
policies on the quick Meta-World benchmark when trained outside this code. Here it trains on the same data, windows,
statistics, image augmentation (``--image-shift``), schedule, EMA, checkpoints, evaluation and serving as every other
variant, so that comparisons with it are fair. It is much cheaper per sample than ``nano`` (see the ``cnn`` preset).

Where it plugs in. ``RegressPolicy`` (``regress.py``) calls ``predict`` and ``forward`` exactly as on
``RegressVLA``. ``PlanExecutePolicy.build`` and ``from_pretrained`` (``policy.py``) build this network for the
``cnn`` preset (``BackbonePreset.vision_encoder == "cnn"``; its ``vision`` dict sizes the trunk, its ``text`` dict
the head and embeddings). The checkpoint's ``config.json`` records :meth:`CNNRegressVLA.architecture` under
"backbone", from which :meth:`CNNRegressVLA.from_record` rebuilds the same network.

Example::

    config = policy_config("cnn", variant="regress", cameras=("corner2",))
    policy = PlanExecutePolicy.build(config, ContinuousActions.fit(dataset, exec_horizon=20), instructions)
    loss, metrics = policy(batch)                  # L1, metrics loss/exec and accuracy/exec
    chunk = policy.predict_action_chunk(observation)   # (He, A) in dataset units
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from c2c.errors import ConfigError
from c2c.policy.config import PolicyConfig
from c2c.policy.model import PrefixInputs, VLAOutput
from c2c.policy.regress import chunk_l1_output
from c2c.policy.tokens import VocabularyLayout

ENCODER = "cnn"  # BackbonePreset.vision_encoder of the presets that use this network
MODEL_TYPE = "c2c-cnn"  # the "model_type" of the architecture record saved in a checkpoint's config.json


def _conv_block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=2, padding=1, bias=False),
                         nn.GroupNorm(min(8, outputs), outputs), nn.ReLU(inplace=True))


class CameraTrunk(nn.Module):
    """(N, 3, H, W) images in [-1, 1] -> (N, 2 K + C) features: K spatial-softmax keypoints (x, y in [-1, 1]) and
    the globally averaged last feature map (C channels)."""

    def __init__(self, channels: tuple[int, ...], keypoints: int) -> None:
        super().__init__()
        widths = (3, *channels)
        self.features = nn.Sequential(*(_conv_block(a, b) for a, b in itertools.pairwise(widths)))
        self.maps = nn.Conv2d(channels[-1], keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))  # learned softmax temperature, starts at 1
        self.size = 2 * keypoints + channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # (N, C, h, w)
        height, width = features.shape[-2:]
        ys = torch.linspace(-1.0, 1.0, height, device=images.device, dtype=features.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=images.device, dtype=features.dtype)
        weights = torch.softmax(self.maps(features).flatten(2) * self.log_temperature.exp(), dim=-1)  # (N, K, h w)
        weights = weights.unflatten(-1, (height, width))  # (N, K, h, w)
        x = (weights.sum(-2) * xs).sum(-1)  # (N, K) expected column
        y = (weights.sum(-1) * ys).sum(-1)  # (N, K) expected row
        return torch.cat([x, y, features.mean(dim=(-2, -1))], dim=-1)  # (N, 2 K + C)


class CNNRegressVLA(nn.Module):
    """Camera trunks + state projection + instruction embedding + MLP -> the (He, A) normalised chunk.

    The interface ``RegressPolicy`` uses: ``predict(inputs)`` -> (B, He, A) float32, ``forward(inputs, targets)``
    -> ``VLAOutput`` with ``regress``'s L1 loss and metrics; ``config``, ``vocabulary`` and ``suffix`` (None) as on
    the transformer networks.
    """

    suffix = None  # no action tokens
    backbone = None  # no transformer backbone (memory options that need one say so)

    def __init__(self, config: PolicyConfig, vocabulary: VocabularyLayout, *, channels: tuple[int, ...],
                 keypoints: int, hidden_size: int, embedding_size: int) -> None:
        super().__init__()
        if config.state_encoding != "projection":
            raise ConfigError(f"state_encoding {config.state_encoding!r}: the {config.backbone!r} network takes the "
                              "state through a linear layer only (state_encoding 'projection')")
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1 or min(keypoints, hidden_size, embedding_size) < 1:
            raise ConfigError(f"{config.backbone!r} sizes must be positive: channels {list(channels)}, keypoints "
                              f"{keypoints}, hidden_size {hidden_size}, embedding_size {embedding_size}")
        self.config, self.vocabulary = config, vocabulary
        self.sizes = dict(channels=list(channels), keypoints=int(keypoints), hidden_size=int(hidden_size),
                          embedding_size=int(embedding_size))
        with torch.random.fork_rng(devices=[]):  # two builds of one config are identical
            torch.manual_seed(config.seed)
            self.cameras = nn.ModuleList(CameraTrunk(channels, keypoints) for _ in config.cameras)
            self.state_projection = nn.Linear(config.state_dim, embedding_size)
            self.instruction_embedding = nn.Embedding(vocabulary.text_size, embedding_size)
            width = len(config.cameras) * self.cameras[0].size + 2 * embedding_size
            self.head = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(inplace=True),
                                      nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=True))
            self.action_head = nn.Linear(hidden_size, config.exec_horizon * config.action_dim)
            nn.init.normal_(self.action_head.weight, std=0.01)  # starts near the q01/q99 midpoint (0)
            nn.init.zeros_(self.action_head.bias)

    # --- construction and the checkpoint record --------------------------------------------------------------------
    @classmethod
    def build(cls, config: PolicyConfig, vocabulary: VocabularyLayout) -> CNNRegressVLA:
        """A fresh network sized by the config's preset (``vision``: channels, keypoints; ``text``: hidden_size,
        embedding_size)."""
        preset = config.preset
        if preset.vision_encoder != ENCODER:
            raise ConfigError(f"backbone {preset.name!r} is not a {ENCODER!r} preset")
        return cls(config, vocabulary, channels=tuple(preset.vision["channels"]),
                   keypoints=preset.vision["keypoints"], hidden_size=preset.text["hidden_size"],
                   embedding_size=preset.text["embedding_size"])

    def architecture(self) -> dict[str, Any]:
        """What ``config.json`` records under "backbone": the sizes that fix the weights' shapes."""
        config = self.config
        return {"model_type": MODEL_TYPE, **self.sizes, "cameras": len(config.cameras),
                "image_size": config.image_size, "state_dim": config.state_dim, "action_dim": config.action_dim,
                "exec_horizon": config.exec_horizon, "vocab_size": self.vocabulary.text_size}

    @classmethod
    def from_record(cls, config: PolicyConfig, record: Any, vocabulary: VocabularyLayout,
                    where: str = "config.json") -> CNNRegressVLA:
        """The network a checkpoint's architecture record describes (random weights, to be overwritten)."""
        if not isinstance(record, dict) or record.get("model_type") != MODEL_TYPE:
            found = record.get("model_type") if isinstance(record, dict) else type(record).__name__
            raise ConfigError(f"{where}: backbone model_type is {found!r}, the {config.backbone!r} preset saves "
                              f"{MODEL_TYPE!r}")
        try:
            model = cls(config, vocabulary, channels=tuple(record["channels"]), keypoints=int(record["keypoints"]),
                        hidden_size=int(record["hidden_size"]), embedding_size=int(record["embedding_size"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{where}: backbone record lacks or mangles {error} ({MODEL_TYPE})") from None
        rebuilt = model.architecture()
        differ = sorted(key for key in set(rebuilt) | set(record) if rebuilt.get(key) != record.get(key))
        if differ:
            raise ConfigError(f"{where}: backbone record does not match the policy config in {', '.join(differ)} "
                              f"({', '.join(f'{k}={record.get(k)!r}, expected {rebuilt.get(k)!r}' for k in differ)})")
        return model

    # --- the network -----------------------------------------------------------------------------------------------
    def features(self, inputs: PrefixInputs) -> torch.Tensor:
        """(B, F): every camera's trunk, the projected state and the mean instruction-token embedding."""
        dtype = self.action_head.weight.dtype
        pixels = inputs.pixels.to(dtype)  # (B, C, 3, H, W) in [-1, 1], cameras in config order
        cameras = [trunk(pixels[:, index]) for index, trunk in enumerate(self.cameras)]  # C x (B, 2 K + c)
        mask = inputs.instruction_mask.to(dtype)[..., None]  # (B, L, 1), 0 on padding
        words = self.instruction_embedding(inputs.instruction_ids)  # (B, L, E)
        instruction = (words * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, E)
        state = self.state_projection(inputs.state.to(dtype))  # (B, E)
        return torch.cat([*cameras, state, instruction], dim=-1)

    def predict(self, inputs: PrefixInputs) -> torch.Tensor:
        """(B, He, A) normalised chunk (float32) in one forward pass."""
        out = self.action_head(self.head(self.features(inputs)))  # (B, He A)
        return out.view(inputs.batch_size, self.config.exec_horizon, self.config.action_dim).float()

    def forward(self, inputs: PrefixInputs, targets: torch.Tensor) -> VLAOutput:
        """L1 between the predicted and the true normalised chunk ``targets`` (B, He, A), as ``RegressVLA``."""
        return chunk_l1_output(self.predict(inputs), targets.to(inputs.state.device))
