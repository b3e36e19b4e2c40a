"""PlanExecutePolicy: the LeRobot-style policy API around PlanExecuteVLA (what eval, serve and training use).

It owns everything around the network: observation checks and normalisation (statistics from the action
tokenizer, so they travel with the checkpoint), the instruction tokenizer, the action tokenizer that turns
generated codes back into actions, the action queue of ``select_action`` and plan caching.

Example::

    policy = PlanExecutePolicy.build(config, action_tokenizer, instructions=dataset_tasks)
    loss, metrics = policy(batch)               # batch: images, state, task, codes.exec (+ codes.plan)
    loss.backward()
    policy.save_pretrained("runs/plan")

    policy = PlanExecutePolicy.from_pretrained("runs/plan")        # ema.safetensors if present
    policy.reset()
    action = policy.select_action(observation)                     # (A,) float32, dataset units
    chunk, plan = policy.predict_action_chunk(observation, return_plan=True)   # (He, A), (K, A)
    policy.last_chunk.repaired, policy.decode_counts   # what the action tokenizer had to repair (fast variant)

Checkpoint directory::

    config.json                 policy config, backbone (PaliGemma or multi-stream) config, vocabulary layout
    model.safetensors           weights of PlanExecuteVLA (ema.safetensors beside it wins when present)
    action_tokenizer/           the frozen action tokenizer with its normalisation statistics (regress: the
                                statistics only, ``regress.ContinuousActions``)
    instruction_tokenizer/      tokenizer.json + prompt settings

Repairs. Constrained decoding makes every RVQ and binning sequence decodable as it is. A FAST sequence (the ``fast``
variant) can still decode to the wrong number of DCT coefficients: the FAST decoder then repairs it (missing
coefficients 0, extra ones cut off). Nothing is hidden: every chunk carries ``repaired`` (B,) and ``unended`` (B,)
(no end token within the length cap), and ``decode_counts`` adds them up over the policy's life (``reset`` keeps
them; ``reset_decode_counts`` clears them).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from c2c.constants import OBS_STATE
from c2c.errors import ConfigError
from c2c.policy.backbone import (
    backbone_from_config,
    build_backbone,
    check_backbone_fits,
    load_pretrained_backbone,
    load_pretrained_text_tokenizer,
    text_vocab_size,
)
from c2c.policy.vision import install_vision_encoder
from c2c.policy.config import PolicyConfig
from c2c.policy.decoding import generate_suffix
from c2c.policy.instructions import InstructionTokenizer
from c2c.policy.model import PlanExecuteVLA
from c2c.policy.multistream import (
    MultiStreamVLA,
    is_multistream_config,
    multistream_from_config,
    multistream_from_paligemma,
)
from c2c.policy.checks import check_action_tokenizer, check_chunk_lengths
from c2c.policy.processing import PLAN_INPUT_CODES, ObservationProcessor, batch_codes
from c2c.policy.tokens import Branch, SuffixLayout, VocabularyLayout, as_action_tokenizer, check_pretrained_text_ids
from c2c.tokenizer import load_tokenizer
from c2c.utils.io import atomic_write_json
from c2c.utils.weights import WEIGHTS_KEY, check_finite, commit_staging, sha256_file, staging_dir, verify_digest

FORMAT = "c2c-policy"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EMA_WEIGHTS_FILE = "ema.safetensors"  # written by the training task; evaluation prefers it (paper C.3)
ACTION_TOKENIZER_DIR = "action_tokenizer"
INSTRUCTION_TOKENIZER_DIR = "instruction_tokenizer"


@dataclass
class GeneratedChunk:
    """One decode: ids and what they decode to."""

    suffix_ids: torch.Tensor  # (B, T) backbone ids, end token last
    plan_ids: torch.Tensor | None  # (B, Tp) plan ids (None for noplan), reusable through plan_ids=
    actions: np.ndarray  # (B, He, A) exec actions in dataset units
    plan: np.ndarray | None  # (B, K, A) decoded coarse plan in dataset units (only when asked)
    repaired: np.ndarray | None = None  # (B,) bool: the action tokenizer repaired the exec codes to decode them
    unended: np.ndarray | None = None  # (B,) bool: no end token within a variable-length branch's cap


def vocabulary_for(config: PolicyConfig, tokenizer: Any, text_vocab_size: int) -> VocabularyLayout:
    """Appended after the text vocabulary (fresh backbone) or in the tail of a pretrained one (``text_vocab_size``:
    the pretrained backbone's embedding rows, 257,152 for pi0-FAST)."""
    bins = config.state_bins if config.state_encoding == "bins" else 0
    if config.preset.pretrained:
        return VocabularyLayout.tail(text_vocab_size, tokenizer.vocabulary_size, bins)
    return VocabularyLayout.appended(text_vocab_size, tokenizer.vocabulary_size, bins)


def suffix_for(config: PolicyConfig, tokenizer: Any, vocabulary: VocabularyLayout) -> SuffixLayout | None:
    """[plan][exec][end]; ids follow the tokenizer's flat ids (level r code k -> r K + k, + R K for separate plans).
    A binning tokenizer's exec branch is He x A positions of one level; ``regress`` has no suffix (None)."""
    if config.continuous:
        return None
    levels, size = tokenizer.num_levels, tokenizer.codebook_size
    branches = []
    variable = getattr(tokenizer, "variable_length", False)  # FAST: ids, the end token, padding, within the cap
    for mode in (("plan",) if config.has_plan else ()) + ("exec",):
        offset = levels * size if tokenizer.variant == "separate" and mode == "plan" else 0
        positions = tokenizer.tokens_per_chunk(mode) // levels
        branches.append(Branch(mode, positions, levels, size, vocabulary.action_start + offset,
                               ends=variable and mode == "exec"))
    return SuffixLayout(branches, vocabulary.end_id, config.token_order)


def vla_class(config: PolicyConfig) -> type[PlanExecuteVLA]:
    """The network of a backbone preset: one Gemma decoder, or the multi-stream decoder of App. C.3; ``regress``:
    the Gemma decoder with a continuous chunk head."""
    if config.continuous:
        from c2c.policy.regress import RegressVLA

        return RegressVLA
    return MultiStreamVLA if config.preset.multistream else PlanExecuteVLA


def is_cnn(config: PolicyConfig) -> bool:
    """The ``cnn`` preset: no transformer backbone; ``cnn.CNNRegressVLA`` is the whole network (``regress`` only)."""
    return config.preset.vision_encoder == "cnn"


def saved_cnn_network(config: PolicyConfig, raw: dict[str, Any], action_tokenizer: Any,
                      instruction_tokenizer: InstructionTokenizer, directory: Path) -> nn.Module:
    """The ``cnn`` network a checkpoint's config.json describes (its "backbone" is the CNN's architecture record)."""
    from c2c.policy.cnn import CNNRegressVLA

    vocabulary = VocabularyLayout(**raw["vocabulary"])
    if vocabulary_for(config, action_tokenizer, instruction_tokenizer.vocab_size) != vocabulary:
        raise ConfigError(f"{directory}: the vocabulary layout does not match its tokenizers (vocabulary: "
                          f"{vocabulary.to_dict()})")
    return CNNRegressVLA.from_record(config, raw["backbone"], vocabulary, where=str(directory / CONFIG_FILE))


def backbone_record(model: nn.Module) -> dict[str, Any]:
    """config.json's "backbone": the transformers (or multi-stream) config, or the ``cnn`` network's sizes."""
    return model.architecture() if hasattr(model, "architecture") else model.backbone.config.to_dict()


def policy_class(config: PolicyConfig, base: type | None = None) -> type:
    """The policy class of a config: ``regress.RegressPolicy`` for ``regress``, else ``base`` (PlanExecutePolicy)."""
    from c2c.policy.regress import RegressPolicy

    base = base or PlanExecutePolicy
    if config.continuous:
        return base if issubclass(base, RegressPolicy) else RegressPolicy
    return PlanExecutePolicy if issubclass(base, RegressPolicy) else base


def load_action_tokenizer(config: PolicyConfig, directory: Path) -> Any:
    """A checkpoint's action tokenizer: regress's statistics, or any saved tokenizer (single-level ones wrapped)."""
    if config.continuous:
        from c2c.policy.regress import ContinuousActions

        return ContinuousActions.from_pretrained(directory)
    return as_action_tokenizer(load_tokenizer(directory))


class PlanExecutePolicy(nn.Module):
    """Plan-then-execute VLA policy: ``forward`` for training, ``select_action`` / ``predict_action_chunk`` to act.

    Example::

        policy = PlanExecutePolicy.from_pretrained("runs/plan")
        policy.reset()
        action = policy.select_action({"observation.images.corner2": image, "observation.images.gripperPOV": wrist,
                                       "observation.state": state, "task": "open the drawer"})   # (A,)
    """

    def __init__(self, config: PolicyConfig, model: PlanExecuteVLA, action_tokenizer: Any,
                 instruction_tokenizer: InstructionTokenizer) -> None:
        super().__init__()
        action_tokenizer = as_action_tokenizer(action_tokenizer)
        check_action_tokenizer(config, action_tokenizer)
        self.config = config
        self.model = model
        self.action_tokenizer = action_tokenizer  # frozen; not a submodule, so its weights stay out of ours
        self.instruction_tokenizer = instruction_tokenizer
        self.normalizers = action_tokenizer.normalizers
        self.processor = ObservationProcessor(config, self.normalizers.state, instruction_tokenizer)
        self.reset_decode_counts()
        self.reset()

    @property
    def suffix(self) -> SuffixLayout:
        return self.model.suffix

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def build(cls, config: PolicyConfig, action_tokenizer: Any,
              instructions: Sequence[str] | None = None) -> PlanExecutePolicy:
        """A fresh policy for training: fresh (tiny) or pretrained (from ``config.backbone_path``) backbone; a
        ``regress`` config gives a ``RegressPolicy`` (``action_tokenizer``: its ``ContinuousActions``), on the
        ``cnn`` preset around ``cnn.CNNRegressVLA`` instead of a transformer."""
        action_tokenizer = as_action_tokenizer(action_tokenizer)
        check_action_tokenizer(config, action_tokenizer)
        if config.preset.pretrained:
            backbone = load_pretrained_backbone(config.backbone_path)  # a PaliGemma or LeRobot pi0fast directory
            instruction_tokenizer = load_pretrained_text_tokenizer(config.backbone_path)
            vocabulary = vocabulary_for(config, action_tokenizer, text_vocab_size(backbone))  # its embedding rows
            check_pretrained_text_ids(vocabulary, instruction_tokenizer.tokenizer,
                                      where=f"{config.backbone_path}: text tokenizer")
        else:
            if not instructions:
                raise ConfigError("instructions: a fresh backbone needs the dataset's instruction strings to "
                                  "train its instruction tokenizer")
            instruction_tokenizer = InstructionTokenizer.train(instructions)
            vocabulary = vocabulary_for(config, action_tokenizer, instruction_tokenizer.vocab_size)
            if is_cnn(config):  # no transformer backbone to build
                from c2c.policy.cnn import CNNRegressVLA

                model = CNNRegressVLA.build(config, vocabulary)
                return policy_class(config, cls)(config, model, action_tokenizer, instruction_tokenizer)
            # A multi-stream VLM stream embeds instruction ids only; action ids have the action stream's table.
            rows = vocabulary.text_size if config.preset.multistream else vocabulary.total
            backbone = install_vision_encoder(build_backbone(config, rows, instruction_tokenizer.pad_id),
                                              config.preset.vision_encoder, config.seed)
        check_backbone_fits(config, backbone)
        if config.preset.multistream:  # App. C.3: the PaliGemma becomes the VLM stream
            backbone = multistream_from_paligemma(backbone, config.preset.streams, vocabulary, seed=config.seed)
        model = vla_class(config)(config, backbone, vocabulary, suffix_for(config, action_tokenizer, vocabulary))
        if model.state_projection is not None:  # the one module outside the backbone: seeded like it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 1)
                model.state_projection.reset_parameters()
        return policy_class(config, cls)(config, model, action_tokenizer, instruction_tokenizer)

    # --- training ------------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher-forced loss over the suffix (Eq. 9) -> (loss, metrics of detached scalars)."""
        inputs, batched = self.processor.prefix_inputs(batch, self.device)
        if not batched:
            raise ConfigError("forward: expected a batch (observation.state of shape [B, S]), got one observation")
        branches = [(b.name, (b.positions, b.levels)) for b in self.suffix.branches]
        padded = [b.name for b in self.suffix.branches if b.ends]
        codes = batch_codes(batch, branches, self.action_tokenizer.codebook_size, inputs.batch_size, padded=padded)
        if padded:
            check_chunk_lengths(self.action_tokenizer, codes["exec"].cpu().numpy(), self.config.exec_horizon)
        suffix_ids = self.suffix.codes_to_ids({k: v.to(self.device) for k, v in codes.items()})  # (B, T)
        input_ids = None
        if PLAN_INPUT_CODES in batch and "plan" in codes:  # training's --plan-input-noise: corrupted plan inputs
            noisy = torch.as_tensor(np.asarray(batch[PLAN_INPUT_CODES]), dtype=torch.long)
            if noisy.shape != codes["plan"].shape:
                raise ConfigError(f"{PLAN_INPUT_CODES}: shape {tuple(noisy.shape)}, expected the plan codes' "
                                  f"{tuple(codes['plan'].shape)}")
            input_ids = self.suffix.codes_to_ids({**{k: v.to(self.device) for k, v in codes.items()},
                                                  "plan": noisy.to(self.device)})[:, :-1]
        out = self.model(inputs, suffix_ids) if input_ids is None else self.model(inputs, suffix_ids, input_ids)
        return out.loss, out.metrics

    # --- acting --------------------------------------------------------------------------------------------------
    def generate(self, observation: Mapping[str, Any], *, plan_ids: torch.Tensor | None = None,
                 decode_plan: bool = False, temperature: float | None = None, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> tuple[GeneratedChunk, bool]:
        """Decode one chunk per observation (batched); returns (chunk, whether the input was batched)."""
        inputs, batched = self.processor.prefix_inputs(observation, self.device)
        temperature = self.config.temperature if temperature is None else temperature
        top_k = self.config.top_k if top_k is None else top_k
        ids = generate_suffix(self.model, inputs, temperature=temperature, top_k=top_k, generator=generator,
                              plan_ids=plan_ids).cpu()  # (B, T)
        chunk = self.decode_ids(ids, decode_plan=decode_plan)
        return chunk, batched

    def decode_ids(self, ids: torch.Tensor, *, decode_plan: bool = False) -> GeneratedChunk:
        """Generated (B, T) suffix ids -> their chunk, counting what the action tokenizer repaired
        (``decode_counts``)."""
        ids = ids.cpu()
        codes = {name: value.numpy() for name, value in self.suffix.ids_to_codes(ids).items()}  # {branch: (B, N, R)}
        # (B, He, A): only exec drives the robot. The report says which samples needed a repair to decode.
        actions, report = self.action_tokenizer.decode(codes["exec"], "exec", return_report=True)
        has_plan = "plan" in codes
        plan = self.action_tokenizer.decode(codes["plan"], "plan") if has_plan and decode_plan else None
        plan_ids = ids[:, self.suffix.span("plan")] if has_plan else None
        repaired = np.asarray(report.repaired, dtype=bool)
        unended = self.suffix.unended(ids).numpy()
        counts = self.decode_counts
        counts["chunks"] += len(repaired)
        counts["repaired"] += int(repaired.sum())
        counts["unended"] += int(unended.sum())
        return GeneratedChunk(ids, plan_ids, actions, plan, repaired, unended)

    def reset_decode_counts(self) -> None:
        """Zero ``decode_counts``: {"chunks": decoded, "repaired": needed a repair, "unended": no end in the cap}."""
        self.decode_counts = {"chunks": 0, "repaired": 0, "unended": 0}

    def predict_action_chunk(self, observation: Mapping[str, Any], return_plan: bool = False, **decode: Any):
        """(He, A) actions in dataset units ((B, He, A) for a batch); with ``return_plan``, also the decoded
        (K, A) coarse plan (None for noplan). ``decode``: plan_ids, temperature, top_k, generator (a
        torch.Generator on the policy's device)."""
        chunk, batched = self.generate(observation, decode_plan=return_plan, **decode)
        actions = chunk.actions if batched else chunk.actions[0]
        if not return_plan:
            return actions
        plan = None if chunk.plan is None else (chunk.plan if batched else chunk.plan[0])
        return actions, plan

    def reset(self) -> None:
        """Forget queued actions and the cached plan (call at every episode start)."""
        self._queue: deque[np.ndarray] = deque()
        self._cached_plan: torch.Tensor | None = None
        self._plan_uses = 0
        self.last_chunk: GeneratedChunk | None = None  # the chunk select_action decoded last
        self.last_plan_fresh = False  # whether that chunk generated its plan (not a reused one)

    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next action: (A,) for one observation, (B, A) for a batch.

        A new chunk is predicted when the queue is empty, i.e. every ``config.replan_every`` steps. With
        ``config.plan_reuse`` > 1 the plan of the last fresh chunk is fed back for that many chunks in total, and
        only exec tokens are generated (plan caching).
        """
        if not self._queue:
            reused = self._reusable_plan(observation)
            chunk, batched = self.generate(observation, plan_ids=reused)
            self.last_chunk, self.last_plan_fresh = chunk, chunk.plan_ids is not None and reused is None
            if chunk.plan_ids is not None and self._plan_uses == 0:
                self._cached_plan = chunk.plan_ids
            self._plan_uses = (self._plan_uses + 1) % self.config.plan_reuse
            actions = chunk.actions if batched else chunk.actions[0]  # (B, He, A) or (He, A)
            steps = np.moveaxis(actions, -2, 0)[: self.config.replan_every]  # (replan_every, [B,] A)
            self._queue.extend(step.copy() for step in steps)
        return self._queue.popleft()

    @property
    def needs_observation(self) -> bool:
        """Whether the next :meth:`select_action` reads its observation: only when it predicts a new chunk (every
        ``replan_every`` steps); the actions queued from the last chunk need none, so a simulator may skip drawing
        the images of the steps between."""
        return not self._queue

    def decode_plan(self, chunk: GeneratedChunk) -> np.ndarray | None:
        """The (B, K, A) coarse plan of an already generated chunk, in dataset units (None without a plan): for
        display, with no second model decode."""
        if chunk.plan is not None:
            return chunk.plan
        if chunk.plan_ids is None:
            return None
        codes = self.suffix.ids_to_codes(chunk.suffix_ids)["plan"].numpy()  # (B, N, R)
        return self.action_tokenizer.decode(codes, "plan")

    def _reusable_plan(self, observation: Mapping[str, Any]) -> torch.Tensor | None:
        if self._plan_uses == 0 or self._cached_plan is None:
            return None
        shape = tuple(getattr(observation.get(OBS_STATE), "shape", ()))  # numpy or torch, on any device
        rows = shape[0] if len(shape) == 2 else 1
        return self._cached_plan if rows == self._cached_plan.shape[0] else None

    # --- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, weights_file: str = WEIGHTS_FILE, *,
                        weights: Mapping[str, nn.Module] | None = None) -> Path:
        """Weights, configs and both tokenizers: the directory alone runs the policy. Written into a staging
        folder and moved in with config.json last, which lists a sha256 of each weights file (of this save, and of
        earlier saves' files still there). ``weights``: several files of this architecture in one save, e.g.
        ``{"model.safetensors": model, "ema.safetensors": ema_model}`` (what training writes), else
        ``self.model`` as ``weights_file``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(directory)
        self.action_tokenizer.save_pretrained(staging / ACTION_TOKENIZER_DIR)
        self.instruction_tokenizer.save(staging / INSTRUCTION_TOKENIZER_DIR)
        files = dict(weights) if weights else {weights_file: self.model}
        digests = {name: digest for name, digest in _recorded_weights(directory).items()
                   if name not in files and (directory / name).is_file()}
        for name, model in files.items():
            save_model(model, str(staging / name))  # handles the tied embedding / LM head
            digests[name] = sha256_file(staging / name)
        atomic_write_json(staging / CONFIG_FILE, {
            "format": FORMAT, "version": FORMAT_VERSION, "policy": self.config.to_dict(),
            "backbone": backbone_record(self.model), "vocabulary": self.model.vocabulary.to_dict(),
            WEIGHTS_KEY: dict(sorted(digests.items())),
        })
        commit_staging(staging, directory, last=CONFIG_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, weights: str = "auto", device: str | torch.device = "cpu",
                        **expected: Any) -> PlanExecutePolicy:
        """Load a checkpoint; ``expected`` config values (e.g. ``variant="plan"``, ``action_dim=4``) must match.
        The saved config picks the class: a ``regress`` checkpoint loads as a ``RegressPolicy``.

        ``weights``: "auto" (ema.safetensors when present, else model.safetensors), "ema" or "model".
        """
        directory = Path(directory)
        raw = _read_checkpoint_config(directory)
        config = PolicyConfig.from_dict(raw["policy"])
        for key, value in expected.items():
            if not hasattr(config, key):
                raise ConfigError(f"unknown policy config key {key!r} in the expected values")
            found = getattr(config, key)
            if _plain(found) != _plain(value):
                raise ConfigError(f"{directory}: checkpoint has {key}={found!r}, expected {value!r}")
        action_tokenizer = load_action_tokenizer(config, directory / ACTION_TOKENIZER_DIR)
        check_action_tokenizer(config, action_tokenizer, where=str(directory / ACTION_TOKENIZER_DIR))
        instruction_tokenizer = InstructionTokenizer.load(directory / INSTRUCTION_TOKENIZER_DIR)
        if is_cnn(config):
            model = saved_cnn_network(config, raw, action_tokenizer, instruction_tokenizer, directory)
            _load_weights(model, _weights_path(directory, weights, raw.get(WEIGHTS_KEY)))
            return policy_class(config, cls)(config, model, action_tokenizer, instruction_tokenizer).to(device)
        if is_multistream_config(raw["backbone"]) != config.preset.multistream:
            raise ConfigError(f"{directory}: the saved backbone config does not match backbone {config.backbone!r}")
        backbone = (multistream_from_config(raw["backbone"]) if config.preset.multistream
                    else install_vision_encoder(backbone_from_config(raw["backbone"]),
                                                config.preset.vision_encoder, config.seed))
        vocabulary = VocabularyLayout(**raw["vocabulary"])
        text_size = (backbone.config.text_config.vocab_size if config.preset.pretrained
                     else instruction_tokenizer.vocab_size)
        if vocabulary_for(config, action_tokenizer, text_size) != vocabulary:
            raise ConfigError(f"{directory}: the vocabulary layout does not match its tokenizers (vocabulary: "
                              f"{vocabulary.to_dict()})")
        model = vla_class(config)(config, backbone, vocabulary, suffix_for(config, action_tokenizer, vocabulary))
        _load_weights(model, _weights_path(directory, weights, raw.get(WEIGHTS_KEY)))
        return policy_class(config, cls)(config, model, action_tokenizer, instruction_tokenizer).to(device)


def _plain(value: Any) -> Any:
    """Tuples and lists compare alike (JSON turns one into the other)."""
    return list(value) if isinstance(value, (tuple, list)) else value


def _read_checkpoint_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: missing (not a saved policy directory)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg})") from None
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{path}: format is {raw.get('format')!r}, expected {FORMAT!r}")
    if raw.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: version is {raw.get('version')!r}, expected {FORMAT_VERSION}")
    return raw


def _recorded_weights(directory: Path) -> dict[str, str]:
    """The weights digests an existing policy config in ``directory`` lists (none when there is no such config)."""
    try:
        recorded = json.loads((directory / CONFIG_FILE).read_text()).get(WEIGHTS_KEY)
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(recorded) if isinstance(recorded, dict) else {}


def _weights_path(directory: Path, weights: str, recorded: dict[str, str] | None = None) -> Path:
    """The weights file to load. "auto": the EMA weights when saved (a directory whose config lists them but that
    lacks them is incomplete and refused, never served with the raw weights), else the model's."""
    choices = {"ema": EMA_WEIGHTS_FILE, "model": WEIGHTS_FILE}
    if weights == "auto":
        weights = "ema" if (directory / EMA_WEIGHTS_FILE).is_file() or EMA_WEIGHTS_FILE in (recorded or {}) \
            else "model"
    if weights not in choices:
        raise ConfigError(f"weights must be 'auto', 'ema' or 'model', got {weights!r}")
    path = directory / choices[weights]
    verify_digest(path, recorded)
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    return path


def _load_weights(model: nn.Module, path: Path) -> None:
    try:
        load_model(model, str(path), strict=True)
    except (RuntimeError, OSError, SafetensorError) as err:
        raise ConfigError(f"{path}: weights do not match the config ({str(err).splitlines()[0]})") from None
    check_finite(model.state_dict(), path)
