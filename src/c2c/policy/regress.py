"""``regress``: the continuous baseline on the policy's own backbone (ACT-style chunk regression, no tokenizer).

The prefix is the token policies' (cameras, instruction, state; bidirectional). He learned query tokens follow it;
they see the whole prefix and each other (bidirectional among themselves, as ACT's decoder queries), and the prefix
does not see them. A linear layer reads each query's output as one step of the q01/q99-normalised (He, A) chunk, and
training minimises the L1 error to the true chunk. Decoding is one forward pass; the chunk is clipped to [-1, 1]
(the [q01, q99] range every tokenizer decodes into) and unnormalised.

Statistics: :class:`ContinuousActions` holds the action and state q01/q99 that the tokenizer would have, fitted the
same way (``c2c.tokenizer.data.load_chunks``: the dataset's training episodes). It takes the action tokenizer's place
in the policy, the training data and the checkpoint (``action_tokenizer/config.json``, type ``continuous``). Its
"codes" are the normalised targets in fixed point, ``round((x + 1) 2^20)``, so that the training data, the cached
targets and the batches (``codes.exec``, (B, He, A) integers) keep one integer format for every variant.

Metrics: ``loss/exec`` is the L1 in normalised units; ``accuracy/exec`` the fraction of values within 1/256 of the
target, half the width of a 256-bin token: where the binning baseline's argmax would be the right token.

Networks: :class:`RegressVLA` (any single-stream transformer preset) or, on the ``cnn`` preset, ``cnn.CNNRegressVLA``
(a plain convolutional regressor, no transformer); :class:`RegressPolicy` drives either through ``predict`` and
``forward``.

Example::

    actions = ContinuousActions.fit(dataset_dir, exec_horizon=20)
    policy = PlanExecutePolicy.build(policy_config("nano", variant="regress"), actions, instructions)  # RegressPolicy
    batch["codes.exec"] = actions.encode(chunks)              # (B, He, A) fixed-point targets
    loss, metrics = policy(batch)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from c2c.data.normalize import ActionNormalizers
from c2c.errors import ConfigError
from c2c.policy.model import PlanExecuteVLA, PrefixInputs, VLAOutput
from c2c.policy.policy import GeneratedChunk, PlanExecutePolicy
from c2c.policy.processing import batch_codes
from c2c.policy.tokens import ChunkShape, TokenGroup, attention_mask, positions_from_valid
from c2c.utils.io import atomic_write_json

FIXED_POINT = 2**20  # steps per normalised unit of the integer targets (float32 keeps 2^-23 at 1.0)
ACCURACY_TOLERANCE = 1.0 / 256  # half the width of a 256-bin token in normalised units
CONFIG_FILE = "config.json"
TYPE = "continuous"


class ContinuousActions:
    """The action side of a ``regress`` policy: the dataset's normalisation statistics and the target format.

    Duck-types what the policy uses of an action tokenizer: ``variant`` ("continuous"), ``config`` (action dim and
    exec horizon), ``normalizers``, ``encode`` / ``decode`` (fixed point, see the module docstring), ``same_as``,
    ``save_pretrained`` / ``from_pretrained``. It adds no ids to the vocabulary (``vocabulary_size`` 0).
    """

    name = TYPE
    variant = TYPE
    num_levels = 1
    vocabulary_size = 0
    codebook_size = 2 * FIXED_POINT + 1  # integer targets lie in [0, 2^21]

    def __init__(self, normalizers: ActionNormalizers, *, exec_horizon: int) -> None:
        if int(exec_horizon) < 1:
            raise ConfigError(f"ContinuousActions: exec_horizon must be >= 1, got {exec_horizon}")
        self.normalizers = ActionNormalizers(action=normalizers.action, plan=None, state=normalizers.state)
        self.config = ChunkShape(normalizers.action.dim, int(exec_horizon))

    @classmethod
    def fit(cls, dataset_dir: str | Path, *, exec_horizon: int, holdout_fraction: float = 0.1,
            seed: int = 0) -> ContinuousActions:
        """Statistics of a LeRobot dataset's training episodes, fitted as tokenizer training fits them."""
        from c2c.tokenizer.data import default_spec, load_chunks

        spec = default_spec(Path(dataset_dir), exec_horizon, 0, exec_horizon)
        _, _, normalizers, _ = load_chunks(Path(dataset_dir), spec, holdout_fraction, seed)
        return cls(normalizers, exec_horizon=exec_horizon)

    def tokens_per_chunk(self, mode: str = "exec") -> int:
        return self.config.horizon * self.config.action_dim

    def _check_mode(self, mode: str) -> None:
        if mode != "exec":
            raise ConfigError(f"continuous actions: mode {mode!r}; a regress policy has exec chunks only")

    def encode(self, actions: np.ndarray, mode: str = "exec") -> np.ndarray:
        """(B, He, A) actions in dataset units -> (B, He, A) int64 fixed-point normalised targets."""
        self._check_mode(mode)
        actions = np.asarray(actions, dtype=np.float32)
        expected = (self.config.horizon, self.config.action_dim)
        if actions.ndim != 3 or actions.shape[1:] != expected:
            raise ConfigError(f"continuous actions: expected chunks of shape (B, {expected[0]}, {expected[1]}), got "
                              f"{tuple(actions.shape)}")
        normalized = self.normalizers.action.normalize(actions).astype(np.float64)  # (B, He, A) in [-1, 1]
        return np.rint((normalized + 1.0) * FIXED_POINT).astype(np.int64)

    def targets(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, He, A) fixed-point codes -> float32 normalised targets in [-1, 1]."""
        return codes.double().div(FIXED_POINT).sub(1.0).float()

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """(..., A) normalised values -> dataset units, clipped to [q01, q99] like every tokenizer's decode."""
        return self.normalizers.action.unnormalize(np.clip(np.asarray(normalized, dtype=np.float32), -1.0, 1.0))

    def decode(self, codes: np.ndarray, mode: str = "exec", **_: Any) -> np.ndarray:
        """(B, He, A) fixed-point codes -> (B, He, A) actions in dataset units."""
        self._check_mode(mode)
        return self.unnormalize(np.asarray(codes, dtype=np.float64) / FIXED_POINT - 1.0)

    def same_as(self, other: object) -> bool:
        return isinstance(other, ContinuousActions) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"type": TYPE, "action_dim": self.config.action_dim, "exec_horizon": self.config.horizon,
                "normalizers": self.normalizers.to_dict()}

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / CONFIG_FILE, self.to_dict())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ContinuousActions:
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: missing (a regress policy keeps its action statistics there)")
        try:
            raw = json.loads(path.read_text())
            if raw.get("type") != TYPE:
                raise ConfigError(f"type is {raw.get('type')!r}, expected {TYPE!r}")
            actions = cls(ActionNormalizers.from_dict(raw["normalizers"]), exec_horizon=int(raw["exec_horizon"]))
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError, ConfigError) as error:
            raise ConfigError(f"{path}: not continuous action statistics ({error})") from None
        if actions.config.action_dim != int(raw.get("action_dim", actions.config.action_dim)):
            raise ConfigError(f"{path}: action_dim {raw['action_dim']} does not match its statistics")
        return actions


class RegressVLA(PlanExecuteVLA):
    """The token policies' backbone and prefix with He learned queries and a linear (He, A) readout.

    The backbone's LM head is kept (it is tied to the embeddings, which embed the instruction) but not used.
    """

    def __init__(self, config: Any, backbone: nn.Module, vocabulary: Any, suffix: Any = None) -> None:
        super().__init__(config, backbone, vocabulary, suffix)
        width = self.hidden_size
        self.action_queries = nn.Parameter(torch.empty(config.exec_horizon, width))
        self.action_head = nn.Linear(width, config.action_dim)
        with torch.random.fork_rng(devices=[]):  # seeded apart from the backbone, like the state projection
            torch.manual_seed(config.seed + 3)
            # The scale of Gemma's scaled text embeddings (std 0.02 x sqrt(D)).
            nn.init.normal_(self.action_queries, std=0.02 * width**0.5)
            self.action_head.reset_parameters()

    def predict(self, inputs: PrefixInputs) -> torch.Tensor:
        """(B, He, A) normalised chunk (float32) in one forward pass."""
        prefix = self.embed_prefix(inputs)
        batch, length = inputs.batch_size, self.action_queries.shape[0]
        queries = self.action_queries.to(prefix.embeds.dtype).expand(batch, -1, -1)  # (B, He, D)
        embeds = torch.cat([prefix.embeds, queries], dim=1)  # (B, P + He, D)
        valid = torch.cat([prefix.valid, prefix.valid.new_ones(batch, length)], dim=1)  # (B, P + He)
        groups = prefix.groups + [TokenGroup("action_queries", length, causal=True)]
        mask = attention_mask(groups, valid)  # (B, 1, P + He, P + He): the prefix does not see the queries
        start = prefix.embeds.shape[1]
        mask[:, :, start:, start:] = True  # the queries see each other both ways
        hidden = self.decoder(embeds, mask, positions_from_valid(valid))  # (B, P + He, D)
        return self.action_head(hidden[:, start:].to(self.action_head.weight.dtype)).float()  # (B, He, A)

    def forward(self, inputs: PrefixInputs, targets: torch.Tensor) -> VLAOutput:
        """L1 between the predicted and the true normalised chunk ``targets`` (B, He, A)."""
        return chunk_l1_output(self.predict(inputs), targets.to(inputs.state.device))


def chunk_l1_output(predicted: torch.Tensor, targets: torch.Tensor) -> VLAOutput:
    """The loss and metrics of every ``regress`` network (this backbone's and ``cnn.py``'s): the L1 between the
    predicted and the true normalised (B, He, A) chunks, ``loss/exec`` and ``accuracy/exec`` (module docstring)."""
    error = (predicted - targets).abs()  # (B, He, A)
    loss = error.mean()
    accuracy = (error.detach() <= ACCURACY_TOLERANCE).float().mean()
    metrics = {"loss": loss.detach(), "accuracy": accuracy, "loss/exec": loss.detach(), "accuracy/exec": accuracy}
    return VLAOutput(loss, None, metrics)


class RegressPolicy(PlanExecutePolicy):
    """``PlanExecutePolicy``'s API (forward, predict_action_chunk, select_action, reset, save_pretrained,
    from_pretrained) around :class:`RegressVLA`. ``PlanExecutePolicy.build`` and ``from_pretrained`` return one for
    a ``regress`` config; ``action_tokenizer`` is the :class:`ContinuousActions` statistics."""

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L1 loss of the chunk against ``codes.exec`` (B, He, A), the targets ``ContinuousActions.encode`` gives."""
        inputs, batched = self.processor.prefix_inputs(batch, self.device)
        if not batched:
            raise ConfigError("forward: expected a batch (observation.state of shape [B, S]), got one observation")
        shape = (self.config.exec_horizon, self.config.action_dim)
        codes = batch_codes(batch, [("exec", shape)], self.action_tokenizer.codebook_size, inputs.batch_size)
        out = self.model(inputs, self.action_tokenizer.targets(codes["exec"]).to(self.device))
        return out.loss, out.metrics

    def generate(self, observation: Mapping[str, Any], **_: Any) -> tuple[GeneratedChunk, bool]:
        """One chunk per observation (batched); deterministic, so temperature, top_k and plans do not apply."""
        inputs, batched = self.processor.prefix_inputs(observation, self.device)
        with torch.no_grad():
            normalized = self.model.predict(inputs).cpu().numpy()  # (B, He, A)
        actions = self.action_tokenizer.unnormalize(normalized)
        empty = torch.empty(inputs.batch_size, 0, dtype=torch.long)
        return GeneratedChunk(empty, None, actions, None), batched
