"""Instruction tokenizers: a small word-level vocabulary trained on the dataset's instructions, or PaliGemma's own.

A from-scratch backbone has no text vocabulary of its own, so the ``tiny`` policy learns a word-level one from
the instruction strings of its training set (tens of distinct sentences: a word vocabulary of a few hundred ids
covers them exactly, where a BPE would only split the same words further). A pretrained PaliGemma brings its
SentencePiece tokenizer (``tokenizer.json`` in the backbone directory); its prompts follow PaliGemma's convention,
``<bos>`` + text + ``"\\n"``. Either way the tokenizer is saved inside every policy checkpoint.

Example::

    tok = InstructionTokenizer.train(["pick up the puck", "open the drawer"])
    ids, mask = tok.encode(["open the drawer"], max_tokens=8)    # (1, 8) int64, (1, 8) bool
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tokenizers.trainers import WordLevelTrainer

from c2c.errors import ConfigError

PAD, UNK = "<pad>", "<unk>"
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "instruction_tokenizer.json"


def clean_instruction(text: str) -> str:
    """One spelling for every source: underscores (LIBERO file names) become spaces, whitespace is collapsed."""
    return " ".join(str(text).replace("_", " ").split())


class InstructionTokenizer:
    """Turns instruction strings into padded id rows of the backbone's text vocabulary."""

    def __init__(self, tokenizer: Tokenizer, *, bos: str | None = None, prompt_suffix: str = "") -> None:
        self.tokenizer = tokenizer
        self.bos = bos  # token prepended to every prompt (PaliGemma: "<bos>"), None for none
        self.prompt_suffix = prompt_suffix  # text appended to every prompt (PaliGemma: "\n")
        self.pad_id = self._id(PAD, default=0)
        self.bos_id = None if bos is None else self._id(bos)

    def _id(self, token: str, default: int | None = None) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            if default is not None:
                return default
            raise ConfigError(f"instruction tokenizer has no {token!r} token")
        return int(found)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    @classmethod
    def train(cls, instructions: Sequence[str]) -> InstructionTokenizer:
        """A lower-cased word-level vocabulary over these instructions; unseen words map to <unk>."""
        texts = [clean_instruction(t) for t in instructions]
        if not texts:
            raise ConfigError("cannot train an instruction tokenizer on zero instructions")
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation apart
        tokenizer.train_from_iterator(texts, WordLevelTrainer(special_tokens=[PAD, UNK], min_frequency=1))
        return cls(tokenizer)

    @classmethod
    def from_backbone(cls, directory: str | Path) -> InstructionTokenizer:
        """PaliGemma's text tokenizer from a local backbone directory (its ``tokenizer.json``)."""
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: missing (a pretrained backbone directory must hold its tokenizer.json)")
        tokenizer = Tokenizer.from_file(str(path))
        has_bos = tokenizer.token_to_id("<bos>") is not None
        return cls(tokenizer, bos="<bos>" if has_bos else None, prompt_suffix="\n")

    def encode(self, instructions: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Instructions -> ids (B, L) int64 right-padded with <pad>, and a (B, L) bool mask of real tokens.

        Instructions longer than ``max_tokens`` are truncated (the tail of a robot instruction is the least
        informative part to lose; the training task can check lengths with :meth:`count_tokens`).
        """
        ids = torch.full((len(instructions), max_tokens), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(instructions), max_tokens), dtype=torch.bool)  # (B, L)
        for row, tokens in enumerate(self._token_ids(instructions)):
            tokens = tokens[:max_tokens]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = True
        return ids, mask

    def count_tokens(self, instructions: Sequence[str]) -> list[int]:
        return [len(tokens) for tokens in self._token_ids(instructions)]

    def _token_ids(self, instructions: Sequence[str]) -> list[list[int]]:
        prompts = [clean_instruction(t) + self.prompt_suffix for t in instructions]
        encoded = self.tokenizer.encode_batch(prompts, add_special_tokens=False)
        prefix = [] if self.bos_id is None else [self.bos_id]
        return [prefix + list(e.ids) for e in encoded]

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        settings = {"bos": self.bos, "prompt_suffix": self.prompt_suffix}
        (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> InstructionTokenizer:
        directory = Path(directory)
        for name in (TOKENIZER_FILE, SETTINGS_FILE):
            if not (directory / name).is_file():
                raise ConfigError(f"{directory / name}: missing (not a saved instruction tokenizer)")
        settings = json.loads((directory / SETTINGS_FILE).read_text())
        return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), bos=settings.get("bos"),
                   prompt_suffix=settings.get("prompt_suffix", ""))
