"""Raw observations and training batches -> model tensors, with checks that name the bad key.

One path serves training batches, evaluation and serving, so they cannot drift: images uint8 (H, W, 3) per camera
-> float in [-1, 1] (SigLIP's mean 0.5 / std 0.5), the state -> q01/q99 normalisation with the statistics saved
in the checkpoint, the instruction -> padded ids. No resizing happens here: an image of the wrong size is an error,
because silently resizing one camera of a served robot would hide a misconfiguration.

Keys: ``observation.images.<cam>`` (uint8 (H, W, 3) or (B, H, W, 3)), ``observation.state`` (float [S] or
[B, S]), ``task`` (str or list of str); training batches add ``codes.exec`` (B, N, R) and, for plan variants,
``codes.plan`` (B, N, R): the action tokenizer's codes, computed once before training. Variable-length codes (the
``fast`` variant's exec codes) end with ``PAD_CODE`` (-1) up to the length cap N.

Example::

    processor = ObservationProcessor(config, normalizers.state, instruction_tokenizer)
    inputs, batched = processor.prefix_inputs(observation)          # PrefixInputs, False for a single obs
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from c2c.constants import OBS_STATE, TASK, image_key
from c2c.data.normalize import QuantileNormalizer
from c2c.errors import ConfigError
from c2c.policy.config import PolicyConfig
from c2c.policy.instructions import InstructionTokenizer
from c2c.policy.model import PrefixInputs
from c2c.tokenizer.base import PAD_CODE

EXEC_CODES = "codes.exec"  # batch key: (B, N, R) exec codes of the action tokenizer
PLAN_CODES = "codes.plan"  # batch key: (B, N, R) plan codes (plan variants only)
CODE_KEYS = {"exec": EXEC_CODES, "plan": PLAN_CODES}
# Training only (``--plan-input-noise``): (B, N, R) plan codes to feed as the decoder's INPUT in place of the true
# ones, some replaced by random codes; the loss's targets stay the true codes.
PLAN_INPUT_CODES = "codes.plan_input"


def _tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        array = np.ascontiguousarray(value)
        # a read-only array (an image decoded or resized elsewhere) is copied: torch tensors are always writable
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    except TypeError:
        raise ConfigError(f"{key}: expected an array, got {type(value).__name__}") from None


class ObservationProcessor:
    """Checks and converts observations for one policy config."""

    def __init__(self, config: PolicyConfig, state_normalizer: QuantileNormalizer,
                 instruction_tokenizer: InstructionTokenizer) -> None:
        self.config = config
        self.state_normalizer = state_normalizer
        self.instruction_tokenizer = instruction_tokenizer

    def prefix_inputs(self, observation: Mapping[str, Any], device: torch.device | str = "cpu"
                      ) -> tuple[PrefixInputs, bool]:
        """An observation or a batch of them -> (PrefixInputs on ``device``, whether the input was batched)."""
        state, batched = self._state(observation)
        batch = state.shape[0]
        pixels = torch.stack([self._image(observation, camera, batch, batched).to(device)
                              for camera in self.config.cameras], dim=1)  # (B, C, 3, H, W) uint8
        pixels = pixels.float() / 127.5 - 1.0  # SigLIP: (x / 255 - 0.5) / 0.5, in [-1, 1]
        ids, mask = self.instruction_tokenizer.encode(self._tasks(observation, batch),
                                                      self.config.max_instruction_tokens)  # (B, L), (B, L)
        normalized = torch.from_numpy(self.state_normalizer.normalize(state))  # (B, S) in [-1, 1]
        inputs = PrefixInputs(pixels=pixels, instruction_ids=ids, instruction_mask=mask, state=normalized)
        return inputs.to(device), batched

    def _state(self, observation: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
        expected = f"float32 [{self.config.state_dim}] (or [B, {self.config.state_dim}])"
        if OBS_STATE not in observation:
            raise ConfigError(f"observation lacks {OBS_STATE!r} (expected {expected})")
        value = observation[OBS_STATE]
        state = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if state.ndim not in (1, 2) or state.shape[-1] != self.config.state_dim:
            raise ConfigError(f"{OBS_STATE}: expected {expected}, got shape {tuple(state.shape)}")
        if not np.issubdtype(state.dtype, np.number) or not np.isfinite(state).all():
            raise ConfigError(f"{OBS_STATE}: expected finite numbers, got dtype {state.dtype}")
        batched = state.ndim == 2
        return state.astype(np.float32).reshape(-1, self.config.state_dim), batched  # (B, S)

    def _image(self, observation: Mapping[str, Any], camera: str, batch: int, batched: bool) -> torch.Tensor:
        key, size = image_key(camera), self.config.image_size
        shape = (batch, size, size, 3) if batched else (size, size, 3)
        if key not in observation:
            raise ConfigError(f"observation lacks {key!r} (expected a uint8 {shape} image of camera {camera!r}; "
                              f"cameras: {list(self.config.cameras)})")
        image = _tensor(observation[key], key)
        if image.dtype != torch.uint8:
            raise ConfigError(f"{key}: expected dtype uint8, got {str(image.dtype).removeprefix('torch.')}")
        if tuple(image.shape) != shape:
            raise ConfigError(f"{key}: expected shape {shape}, got {tuple(image.shape)}")
        return image.reshape(batch, size, size, 3).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8

    def _tasks(self, observation: Mapping[str, Any], batch: int) -> list[str]:
        if TASK not in observation:
            raise ConfigError(f"observation lacks {TASK!r} (expected the instruction string)")
        tasks = observation[TASK]
        if isinstance(tasks, str):
            tasks = [tasks]
        elif isinstance(tasks, (list, tuple, np.ndarray)):
            tasks = list(tasks)
        if not isinstance(tasks, list) or len(tasks) != batch or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f"{TASK}: expected {batch} instruction string(s), one per state row, got {tasks!r}")
        return tasks


def batch_codes(batch: Mapping[str, Any], branches: Sequence[tuple[str, tuple[int, int]]], codebook_size: int,
                batch_size: int, padded: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Check and collect the precomputed target codes: {branch: (B, N, R) int64 in [0, K)}; the branches named in
    ``padded`` may end with PAD_CODE (variable length), but no code may follow a PAD_CODE."""
    codes = {}
    for name, (positions, levels) in branches:
        key = CODE_KEYS[name]
        expected = (batch_size, positions, levels)
        if key not in batch:
            raise ConfigError(f"batch lacks {key!r} (expected {name} codes of shape {expected})")
        value = _tensor(batch[key], key)
        if tuple(value.shape) != expected:
            raise ConfigError(f"{key}: expected shape {expected}, got {tuple(value.shape)}")
        if value.dtype.is_floating_point or value.dtype == torch.bool:
            raise ConfigError(f"{key}: expected integer codes, got dtype {value.dtype}")
        pad = value == PAD_CODE if name in padded else torch.zeros_like(value, dtype=torch.bool)
        real = value[~pad]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= codebook_size):
            allowed = f"[0, {codebook_size})" + (f" or PAD_CODE ({PAD_CODE}) after the end" if name in padded else "")
            raise ConfigError(f"{key}: codes must lie in {allowed}, got [{int(real.min())}, {int(real.max())}]")
        if pad.any():
            flat = pad.flatten(1)  # (B, N R)
            after = flat.long().cummax(dim=1).values.bool() & ~flat  # a code after a PAD_CODE
            if after.any():
                sample, position = (int(i) for i in after.nonzero()[0])
                raise ConfigError(f"{key}: sample {sample} has a code at position {position} after PAD_CODE "
                                  f"({PAD_CODE}); padding may only follow the end of a chunk")
        codes[name] = value.long()
    return codes
