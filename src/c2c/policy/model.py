"""PlanExecuteVLA: a PaliGemma-style prefix-LM over [images, instruction, state | plan, exec, end] (Sec. 3.2).

The network maps tensors to tensors; normalisation, tokenizers and the action queue belong to the policy wrapper.

Training (Eq. 9): the suffix is teacher-forced; the output at the last prefix token predicts the first suffix
token and the output at suffix token j predicts token j + 1, so the loss covers every suffix token (plan, exec and
the end token) and nothing else. Per-branch losses and accuracies are reported next to it; accuracy is the argmax
among the ids valid at that position, i.e. what constrained greedy decoding would emit under teacher forcing.
A variable-length suffix (the ``fast`` variant) leaves its padding, every position after the first end token, out
of the loss and the metrics (``SuffixLayout.padding``): decoding forces the end there, so nothing is learned there.

Example::

    model = PlanExecuteVLA(config, backbone, vocabulary, suffix)
    out = model(prefix_inputs, suffix_ids)        # suffix_ids (B, T) from SuffixLayout.codes_to_ids
    out.loss.backward()
    out.metrics["accuracy/exec"]
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
import transformers
from packaging.version import Version
from torch import nn
from transformers import PaliGemmaForConditionalGeneration

from c2c.policy.backbone import image_tokens_per_camera
from c2c.policy.config import PolicyConfig
from c2c.policy.tokens import (
    BRANCHES,
    SuffixLayout,
    TokenGroup,
    VocabularyLayout,
    attention_mask,
    positions_from_valid,
    state_to_bins,
)


def embed_camera_images(vision_tower: nn.Module, projector: nn.Module, pixels: torch.Tensor, tokens_per_camera: int,
                        hidden_size: int) -> torch.Tensor:
    """(B, C, 3, H, W) -> (B, C * P_img, D): every camera through the same SigLIP tower and projector."""
    batch, cameras = pixels.shape[:2]
    features = vision_tower(pixels.flatten(0, 1)).last_hidden_state  # (B C, P_img, Dv)
    projected = projector(features)  # (B C, P_img, D)
    return projected.reshape(batch, cameras * tokens_per_camera, hidden_size)


@dataclass
class PrefixInputs:
    """Model-ready observation tensors (the policy's processing makes them from raw observations)."""

    pixels: torch.Tensor  # (B, C, 3, H, W) float in [-1, 1], cameras in config order
    instruction_ids: torch.Tensor  # (B, L) int64
    instruction_mask: torch.Tensor  # (B, L) bool, False on padding
    state: torch.Tensor  # (B, S) float, q01/q99-normalised to [-1, 1]

    def to(self, device: torch.device | str) -> PrefixInputs:
        return PrefixInputs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return int(self.state.shape[0])


@dataclass
class Prefix:
    """An embedded prefix: what the decoder sees before the first suffix token."""

    embeds: torch.Tensor  # (B, P, D)
    valid: torch.Tensor  # (B, P) bool, False on instruction padding
    groups: list[TokenGroup]  # named runs covering the P tokens


class VLAOutput(NamedTuple):
    loss: torch.Tensor  # scalar: mean next-token cross-entropy over the suffix (Eq. 9)
    logits: torch.Tensor | None  # (B, T, V): logits[:, j] predicts suffix token j (None: loss_vocabulary valid)
    metrics: dict[str, torch.Tensor]  # loss/<branch>, accuracy/<branch> (detached scalars)


class PlanExecuteVLA(nn.Module):
    """Vision tower + projector + Gemma decoder with a prefix-LM mask and a next-token loss on the suffix.

    Example::

        model = PlanExecuteVLA(config, backbone, vocabulary, suffix)
        out = model(prefix_inputs, suffix.codes_to_ids({"plan": plan_codes, "exec": exec_codes}))
        out.loss.backward()
    """

    def __init__(self, config: PolicyConfig, backbone: PaliGemmaForConditionalGeneration,
                 vocabulary: VocabularyLayout, suffix: SuffixLayout) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.vocabulary = vocabulary
        self.suffix = suffix
        self.hidden_size = int(backbone.config.text_config.hidden_size)
        self.image_tokens = image_tokens_per_camera(backbone)
        # "projection": the normalised state becomes one prefix embedding (tokens.py says why it is the default).
        self.state_projection = (nn.Linear(config.state_dim, self.hidden_size)
                                 if config.state_encoding == "projection" else None)

    # --- parts -------------------------------------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.backbone.model.language_model

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.embed_tokens.weight.dtype

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, t) ids -> (B, t, D); Gemma's embedding scales by sqrt(D) itself."""
        return self.language_model.embed_tokens(ids)

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, 3, H, W) -> (B, C * P_img, D): every camera through the same SigLIP tower and projector."""
        return embed_camera_images(self.backbone.model.vision_tower, self.backbone.model.multi_modal_projector,
                                   pixels.to(self.dtype), self.image_tokens, self.hidden_size)

    def embed_state(self, state: torch.Tensor) -> torch.Tensor:
        if self.state_projection is not None:
            return self.state_projection(state.to(self.state_projection.weight.dtype))[:, None]  # (B, 1, D)
        bins = state_to_bins(state, self.config.state_bins)  # (B, S)
        return self.embed_ids(self.vocabulary.state_start + bins)  # (B, S, D)

    def embed_prefix(self, inputs: PrefixInputs) -> Prefix:
        images = self.embed_images(inputs.pixels)  # (B, C P_img, D)
        text = self.embed_ids(inputs.instruction_ids)  # (B, L, D)
        state = self.embed_state(inputs.state).to(text.dtype)  # (B, 1 or S, D)
        groups = [TokenGroup(f"image.{camera}", self.image_tokens, causal=False) for camera in self.config.cameras]
        groups += [TokenGroup("instruction", text.shape[1], causal=False), TokenGroup("state", state.shape[1], False)]
        batch = inputs.batch_size
        valid = torch.cat([
            torch.ones(batch, images.shape[1], dtype=torch.bool, device=text.device),
            inputs.instruction_mask.bool(),
            torch.ones(batch, state.shape[1], dtype=torch.bool, device=text.device),
        ], dim=1)  # (B, P)
        return Prefix(torch.cat([images.to(text.dtype), text, state], dim=1), valid, groups)  # (B, P, D)

    def decoder(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache=None) -> torch.Tensor:
        """Gemma layers over (B, q, D) embeddings with a (B, 1, q, k) bool mask -> (B, q, D) hidden states.

        The mask is always given: PaliGemma configs set Gemma's ``use_bidirectional_attention``, so without a mask
        the decoder would attend everywhere. A 4-D mask reaches the attention kernels unchanged in transformers 5.
        """
        cached = {cache_keyword(type(self.language_model)): cache} if cache is not None else {}
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                  use_cache=cache is not None, **cached)
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor, low: int = 0, high: int | None = None) -> torch.Tensor:
        """(B, t, D) -> (B, t, V) logits, or only those of ids [low, high) (decoding needs one K-id range: for a
        257k-id PaliGemma that is 60x less LM-head work). Gemma's final soft-capping applies if configured."""
        weight = self.backbone.lm_head.weight[low:high]  # (V or high - low, D)
        logits = F.linear(hidden, weight)
        cap = getattr(self.backbone.config.get_text_config(), "final_logit_softcapping", None)
        return logits if cap is None else torch.tanh(logits / cap) * cap

    # --- full sequence -----------------------------------------------------------------------------------------
    def hidden_states(self, inputs: PrefixInputs, suffix_inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Hidden states of [prefix, suffix_inputs] with the prefix-LM mask: ((B, P + t, D), P)."""
        prefix = self.embed_prefix(inputs)
        batch, length = suffix_inputs.shape
        embeds = torch.cat([prefix.embeds, self.embed_ids(suffix_inputs)], dim=1)  # (B, P + t, D)
        valid = torch.cat([prefix.valid, prefix.valid.new_ones(batch, length)], dim=1)  # (B, P + t)
        groups = prefix.groups + [TokenGroup("suffix", length, causal=True)]
        hidden = self.decoder(embeds, attention_mask(groups, valid), positions_from_valid(valid))
        return hidden, prefix.embeds.shape[1]

    def next_token_logits(self, inputs: PrefixInputs, suffix_inputs: torch.Tensor) -> torch.Tensor:
        """Logits predicting suffix tokens 0..t given t suffix inputs: (B, t + 1, V). No cache: full recompute."""
        hidden, prefix_length = self.hidden_states(inputs, suffix_inputs)
        return self.logits(hidden[:, prefix_length - 1:])  # (B, t + 1, V)

    def forward(self, inputs: PrefixInputs, suffix_ids: torch.Tensor,
                input_ids: torch.Tensor | None = None) -> VLAOutput:
        """Teacher-forced next-token loss over the suffix only (Eq. 9). ``suffix_ids`` (B, T), end token last.
        ``input_ids`` (B, T - 1): what the decoder reads instead of ``suffix_ids[:, :-1]`` (the targets stay
        ``suffix_ids``); default: teacher forcing on the targets, as the paper trains.

        ``config.loss_vocabulary``: "full" normalises each token's softmax over the whole vocabulary (Eq. 9 as
        written; pi0-FAST does the same); "valid" normalises it over the ids valid at that position only, which
        is exactly the distribution constrained decoding samples from, and skips the LM-head rows no position
        can use (a third of the head work for a 3-level joint tokenizer; ``logits`` is then None).
        """
        inputs_ids = suffix_ids[:, :-1] if input_ids is None else input_ids  # the end token is never an input
        if self.config.loss_vocabulary == "valid":
            return self._forward_valid(inputs, suffix_ids, inputs_ids)
        logits = self.next_token_logits(inputs, inputs_ids)  # (B, T, V)
        token_loss = F.cross_entropy(logits.flatten(0, 1).float(), suffix_ids.flatten(), reduction="none")
        token_loss = token_loss.view_as(suffix_ids)  # (B, T)
        predicted = self._constrained_argmax(logits.detach())
        real = self._real(suffix_ids)
        return VLAOutput(self._mean(token_loss, real), logits,
                         self._metrics(predicted, suffix_ids, token_loss.detach(), real))

    def _forward_valid(self, inputs: PrefixInputs, suffix_ids: torch.Tensor, input_ids: torch.Tensor) -> VLAOutput:
        hidden, prefix_length = self.hidden_states(inputs, input_ids)
        hidden = hidden[:, prefix_length - 1:]  # (B, T, D): hidden[:, j] predicts suffix token j
        token_loss = hidden.new_zeros(suffix_ids.shape, dtype=torch.float32)  # (B, T)
        predicted = suffix_ids.clone()  # the end position has one valid id: loss 0, always right
        for (low, high), positions in self._valid_ranges().items():
            if high - low < 2:
                continue
            positions = positions.to(hidden.device)
            logits = self.logits(hidden[:, positions], low, high).float()  # (B, n, high - low)
            targets = suffix_ids[:, positions] - low  # (B, n)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
            token_loss[:, positions] = loss.view_as(targets)
            predicted[:, positions] = logits.detach().argmax(-1) + low
        real = self._real(suffix_ids)
        return VLAOutput(self._mean(token_loss, real), None,
                         self._metrics(predicted, suffix_ids, token_loss.detach(), real))

    def _real(self, suffix_ids: torch.Tensor) -> torch.Tensor | None:
        """(B, T) bool: the positions the loss covers (None: all of them; a variable-length suffix's padding is
        left out)."""
        return ~self.suffix.padding(suffix_ids) if self.suffix.variable else None

    @staticmethod
    def _mean(values: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """Mean of (B, t) values over the real positions (all of them when ``real`` is None)."""
        if real is None:
            return values.mean()
        return (values * real).sum() / real.sum().clamp(min=1)

    def _valid_ranges(self) -> dict[tuple[int, int], torch.Tensor]:
        """Suffix positions grouped by their valid id range [low, high) (one group per residual level)."""
        if not hasattr(self, "_ranges"):
            ranges: dict[tuple[int, int], list[int]] = {}
            for position, (low, high) in enumerate(zip(self.suffix.valid_low.tolist(),
                                                       self.suffix.valid_high.tolist(), strict=True)):
                ranges.setdefault((int(low), int(high)), []).append(position)
            self._ranges = {key: torch.tensor(value) for key, value in ranges.items()}
        return self._ranges

    def _constrained_argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, V) -> (B, T): the most likely id among those valid at each position."""
        low = self.suffix.valid_low.to(logits.device)  # (T,)
        high = self.suffix.valid_high.to(logits.device)  # (T,)
        ids = torch.arange(logits.shape[-1], device=logits.device)  # (V,)
        allowed = (ids[None] >= low[:, None]) & (ids[None] < high[:, None])  # (T, V)
        return logits.masked_fill(~allowed, float("-inf")).argmax(-1)  # (B, T)

    def _metrics(self, predicted: torch.Tensor, targets: torch.Tensor, token_loss: torch.Tensor,
                 real: torch.Tensor | None = None) -> dict:
        """Loss and accuracy overall and per branch. With ``real`` (a variable-length suffix) only real positions
        count, and each sample's end token, wherever it comes, is the "end" branch's."""
        correct = (predicted == targets).float()  # (B, T)
        branch_index = self.suffix.branch_index.to(targets.device)  # (T,)
        metrics = {"loss": self._mean(token_loss, real), "accuracy": self._mean(correct, real)}
        if real is not None:
            branch_index = branch_index.expand_as(targets).masked_fill(
                real & (targets == self.suffix.end_id), BRANCHES.index("end"))  # (B, T)
        for index, name in enumerate(BRANCHES):
            selected = branch_index == index
            if real is not None:
                if selected.any():
                    metrics[f"loss/{name}"] = self._mean(token_loss, selected & real)
                    metrics[f"accuracy/{name}"] = self._mean(correct, selected & real)
            elif selected.any():
                metrics[f"loss/{name}"] = token_loss[:, selected].mean()
                metrics[f"accuracy/{name}"] = correct[:, selected].mean()
        return metrics


@functools.cache
def cache_keyword(decoder: type) -> str:
    """The name under which ``decoder.forward`` takes its KV cache: ``past_key_values`` up to transformers
    5.23, ``cache`` from 5.24 (the old name then only warns). An unknown keyword would be swallowed by ``**kwargs``
    and no step would see the cache, so the name is read off the installed signature."""
    parameters = inspect.signature(decoder.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise RuntimeError(f"{decoder.__name__}.forward takes neither 'cache' nor 'past_key_values': this transformers "
                       "release is not supported (see pyproject.toml)")


MIN_TRANSFORMERS = "5.4"  # as pyproject.toml: older 5.x releases attend differently under the 4-D suffix masks


def check_transformers(version: str) -> None:
    """Refuse transformers releases that would train and decode a different model without an error."""
    if not Version(MIN_TRANSFORMERS) <= Version(version) < Version("6"):
        raise ImportError(f"c2c needs transformers >= {MIN_TRANSFORMERS}, < 6 (found {version}): 5.0-5.3 apply "
                          f"Gemma's attention masks differently; pip install 'transformers>={MIN_TRANSFORMERS},<6'")


check_transformers(transformers.__version__)
