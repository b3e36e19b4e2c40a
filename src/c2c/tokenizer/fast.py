"""FAST (pi0-FAST): a DCT along time, quantized, then compressed by byte-pair encoding.

Per chunk: normalize to [-1, 1], take the orthonormal DCT-II of every action dimension along time, round
``coef x scale`` to integers, flatten low frequencies first (all dims of frequency 0, then frequency 1, ...), write
each integer as one character and let a BPE (HF ``tokenizers``) merge frequent runs into tokens. Exec chunks and
coarse plans are trained into one BPE, so both modes share one vocabulary.

The orthonormal DCT keeps the Euclidean norm, so no coefficient of an H-step chunk in [-1, 1] exceeds sqrt(H): the
integers lie in [-bound, bound] with ``bound = ceil(scale x sqrt(H))``, a fixed alphabet that every chunk encodes
with (no unknown characters, whatever the data).

Decoding never raises and never falls back to an all-zero chunk (openpi issue 833): ids outside the vocabulary and
PAD inside a sequence are dropped, missing coefficients are 0 (the highest frequencies are lost first), extra ones
are cut off, and the report says what was repaired.

Example::

    tok = FastTokenizer.fit(normalizers, exec_chunks, plan_chunks, action_dim=4)   # (M, 20, 4) training chunks
    codes = tok.encode(actions)                              # (B, 20, 4) -> (B, N, 1), PAD_CODE after each end
    again, report = tok.decode(codes, return_report=True)    # (B, 20, 4); report.repaired is all False here
    tok.save_pretrained("runs/fast")                         # config.json + bpe.json
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer, models, trainers

from c2c.data.normalize import ActionNormalizers
from c2c.errors import ConfigError
from c2c.tokenizer.base import MODES, PAD_CODE, DecodeReport, Mode, check_actions, check_mode
from c2c.tokenizer.binning import CONFIG_FILE, SingleLevelTokenizer, level_zero_ids, normalizer_for, read_config
from c2c.utils.io import atomic_write_json, atomic_write_text

BPE_FILE = "bpe.json"
# Integer v is written as chr(CHAR_BASE + bound + v): Latin Extended letters, no whitespace or control characters.
CHAR_BASE = 0x100


@lru_cache(maxsize=16)
def dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II: D[k, t] = s_k cos(pi (2t + 1) k / 2n), s_0 = sqrt(1/n), s_k = sqrt(2/n).

    Orthonormal, so the inverse (DCT-III) is the transpose.
    """
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def coefficient_bound(scale: float, horizon: int) -> int:
    """Largest |round(coef x scale)| for an H-step chunk in [-1, 1]: |coef_k| <= ||x||_2 <= sqrt(H)."""
    return int(math.ceil(scale * math.sqrt(horizon)))


def quantized_coefficients(x: np.ndarray, scale: float, bound: int) -> np.ndarray:
    """(B, H, A) normalized chunks -> (B, H*A) int64, frequency-major (all dims of frequency 0 first)."""
    coefficients = dct_matrix(x.shape[1]) @ x  # (H, H) @ (B, H, A) -> (B, H freqs, A)
    quantized = np.clip(np.rint(coefficients * scale), -bound, bound).astype(np.int64)  # (B, H, A)
    return quantized.reshape(x.shape[0], -1)  # (B, H*A)


def coefficient_strings(quantized: np.ndarray, bound: int) -> list[str]:
    """(B, L) integers in [-bound, bound] -> B strings of L characters, without a Python loop per character."""
    batch, length = quantized.shape
    if length == 0:
        return [""] * batch
    code_points = np.ascontiguousarray(quantized + (CHAR_BASE + bound), dtype=np.uint32)  # (B, L)
    return code_points.view(f"<U{length}")[:, 0].tolist()


def alphabet(bound: int) -> list[str]:
    return [chr(CHAR_BASE + bound + value) for value in range(-bound, bound + 1)]


class FastTokenizer(SingleLevelTokenizer):
    """DCT + BPE action tokenizer. Build it with :meth:`fit` or :meth:`from_pretrained`.

    ``tokens_per_chunk(mode)`` is the longest sequence seen at fit time for that mode (the hard bound H x A when
    the mode was not fitted: BPE never emits more tokens than characters). ``encode`` pads to that width, or wider
    when a batch holds a chunk longer than any seen at fit time: codes are never truncated.
    """

    name: ClassVar[str] = "fast"

    def __init__(
        self,
        normalizers: ActionNormalizers,
        bpe: Tokenizer,
        *,
        action_dim: int,
        exec_horizon: int = 20,
        plan_steps: int = 20,
        scale: float = 10.0,
        max_tokens: dict[str, int] | None = None,
    ) -> None:
        for field, value in (("action_dim", action_dim), ("exec_horizon", exec_horizon), ("plan_steps", plan_steps)):
            if int(value) < 1:
                raise ConfigError(f"FastTokenizer: {field} must be >= 1, got {value}")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"FastTokenizer: scale must be a positive number, got {scale}")
        for label, normalizer in (("action", normalizers.action), ("plan", normalizers.plan)):
            if normalizer is not None and normalizer.dim != action_dim:
                raise ConfigError(
                    f"FastTokenizer: action_dim is {action_dim} but the {label} statistics are {normalizer.dim}-dim"
                )
        self.normalizers = normalizers
        self.bpe = bpe
        self.action_dim = int(action_dim)
        self.exec_horizon = int(exec_horizon)  # He: steps of an executable chunk
        self.plan_steps = int(plan_steps)  # K: steps of a coarse plan
        self.scale = float(scale)  # quantization step of the DCT coefficients is 1 / scale
        self.bound = coefficient_bound(self.scale, max(self.exec_horizon, self.plan_steps))  # alphabet [-bound, bound]
        self.max_tokens = {mode: int(n) for mode, n in (max_tokens or {}).items()}  # longest sequence at fit time
        self._build_lookup()

    def _build_lookup(self) -> None:
        """Id -> coefficient tables, so decoding is array indexing rather than string handling."""
        vocab = self.bpe.get_vocab()  # {token string: id}
        known = set(alphabet(self.bound))
        lacking = [char for char in sorted(known) if char not in vocab]
        if lacking:
            raise ConfigError(f"FastTokenizer: the BPE vocabulary lacks {len(lacking)} of the coefficient characters")
        foreign = [token for token in vocab if not set(token) <= known]
        if foreign:
            raise ConfigError(f"FastTokenizer: the BPE vocabulary has tokens outside the alphabet, e.g. {foreign[0]!r}")
        size = max(vocab.values()) + 1
        lengths = np.zeros(size, dtype=np.int64)  # (V,) coefficients per token; 0 = not an id of this vocabulary
        offsets = np.zeros(size, dtype=np.int64)  # (V,) where a token's coefficients start in `values`
        pieces, cursor = [], 0
        for token, token_id in vocab.items():
            lengths[token_id], offsets[token_id] = len(token), cursor
            pieces.append(np.frombuffer(token.encode("utf-32-le"), dtype=np.uint32).astype(np.int64))
            cursor += len(token)
        self._token_lengths = lengths
        self._token_offsets = offsets
        self._token_values = np.concatenate(pieces) - (CHAR_BASE + self.bound)  # (sum of lengths,) integers

    # --- fitting ---------------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        normalizers: ActionNormalizers,
        exec_chunks: np.ndarray,
        plan_chunks: np.ndarray | None = None,
        *,
        action_dim: int,
        exec_horizon: int = 20,
        plan_steps: int = 20,
        vocab_size: int = 1024,
        scale: float = 10.0,
    ) -> "FastTokenizer":
        """Train the BPE on (M, He, A) exec chunks and optional (M', K, A) plans, both in dataset units."""
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"FastTokenizer.fit: scale must be a positive number, got {scale}")
        bound = coefficient_bound(scale, max(exec_horizon, plan_steps))
        if vocab_size < 2 * bound + 1:
            raise ConfigError(
                f"FastTokenizer.fit: vocab_size {vocab_size} is smaller than the {2 * bound + 1} coefficient values"
            )
        chunks_by_mode = {"exec": exec_chunks, "plan": plan_chunks}
        strings: dict[str, list[str]] = {}
        for mode, horizon in (("exec", exec_horizon), ("plan", plan_steps)):
            chunks = chunks_by_mode[mode]
            if chunks is None:
                continue
            who = f"FastTokenizer.fit ({mode} chunks)"
            chunks = check_actions(chunks, horizon, action_dim, mode, who)
            if chunks.shape[0] == 0:
                raise ConfigError(f"{who}: no chunks to train on")
            x = normalizer_for(normalizers, mode, who).normalize(chunks)  # (M, H, A) in [-1, 1]
            strings[mode] = coefficient_strings(quantized_coefficients(x, scale, bound), bound)

        bpe = Tokenizer(models.BPE())  # no normalizer, no pre-tokenizer: one chunk is one word
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet(bound), show_progress=False)
        bpe.train_from_iterator([s for mode_strings in strings.values() for s in mode_strings], trainer)

        max_tokens = {
            mode: max(len(encoding.ids) for encoding in bpe.encode_batch_fast(mode_strings, add_special_tokens=False))
            for mode, mode_strings in strings.items()
        }
        return cls(
            normalizers,
            bpe,
            action_dim=action_dim,
            exec_horizon=exec_horizon,
            plan_steps=plan_steps,
            scale=scale,
            max_tokens=max_tokens,
        )

    # --- ActionTokenizer -------------------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return int(self._token_lengths.shape[0])

    def tokens_per_chunk(self, mode: Mode = "exec") -> int:
        return self.max_tokens.get(check_mode(mode), self.horizon(mode) * self.action_dim)

    def encode(self, actions: np.ndarray, mode: Mode = "exec") -> np.ndarray:
        x = self.normalized_input(actions, mode)  # (B, H, A) in [-1, 1]
        strings = coefficient_strings(quantized_coefficients(x, self.scale, self.bound), self.bound)
        encodings = self.bpe.encode_batch_fast(strings, add_special_tokens=False)
        lengths = np.array([len(encoding.ids) for encoding in encodings], dtype=np.int64)  # (B,)
        width = max(self.tokens_per_chunk(mode), int(lengths.max(initial=0)))
        codes = np.full((len(strings), width), PAD_CODE, dtype=np.int64)  # (B, N)
        if len(strings):
            filled = np.arange(width)[None, :] < lengths[:, None]  # (B, N): row-major order matches concatenation
            codes[filled] = np.concatenate([encoding.ids for encoding in encodings])
        return codes[:, :, None]  # (B, N, 1)

    def decode(
        self, codes: np.ndarray, mode: Mode = "exec", *, return_report: bool = False
    ) -> np.ndarray | tuple[np.ndarray, DecodeReport]:
        """Concatenate the coefficients of every known id, dequantize, inverse DCT, unnormalize. Never raises.

        Repairs (each counted in the report): unknown ids, negative ids and PAD before the last token are dropped;
        missing coefficients are 0 (high frequencies lost, low ones kept); coefficients past H x A are cut off;
        levels above the first are ignored. The result is clipped to [q01, q99] like every normalized chunk.
        """
        who = f"{self.name} decode"
        normalizer = normalizer_for(self.normalizers, mode, who)
        horizon = self.horizon(mode)
        expected = horizon * self.action_dim  # coefficients of one chunk
        ids, garbage, extra_level_tokens = level_zero_ids(codes, who)  # (B, N), (B, N), (B,)
        batch = ids.shape[0]

        known = (ids >= 0) & (ids < self.codebook_size)  # (B, N)
        safe_ids = np.where(known, ids, 0)
        token_lengths = np.where(known, self._token_lengths[safe_ids], 0)  # (B, N); 0 also for holes in the vocab
        known &= token_lengths > 0
        content = (ids != PAD_CODE) | garbage  # (B, N): anything but padding
        before_last = np.flip(np.logical_or.accumulate(np.flip(content, axis=1), axis=1), axis=1)  # (B, N)
        dropped = ~known & before_last  # unknown ids and PAD in the middle; PAD after the end is normal

        starts = np.cumsum(token_lengths, axis=1) - token_lengths  # (B, N): first coefficient index of each token
        cut_tokens = known & (starts >= expected)  # (B, N): tokens wholly past the chunk
        used = known & ~cut_tokens  # (B, N); skipping the rest keeps the work bounded on endless garbage sequences
        rows = np.nonzero(used)[0]  # (T,) sample of every used token, in reading order
        coefficients = self._scatter(ids[used], token_lengths[used], starts[used], rows, batch, expected)  # (B, H*A)
        total = token_lengths.sum(axis=1)  # (B,) coefficients the tokens carry

        coef = coefficients.reshape(batch, horizon, self.action_dim).astype(np.float32) / self.scale  # (B, H, A)
        x = dct_matrix(horizon).T @ coef  # (B, H, A); the inverse of an orthonormal DCT is its transpose
        actions = normalizer.unnormalize(np.clip(x, -1.0, 1.0))
        if not return_report:
            return actions

        invalid = dropped.sum(axis=1) + cut_tokens.sum(axis=1) + extra_level_tokens  # (B,)
        repaired = (invalid > 0) | (total != expected)
        messages = []
        for label, count in (
            ("ids outside the vocabulary or PAD inside a sequence dropped", int(dropped.sum())),
            ("sequences short of coefficients (high frequencies set to 0)", int((total < expected).sum())),
            ("sequences with too many coefficients (extra cut off)", int((total > expected).sum())),
            ("tokens of levels above the first ignored", int(extra_level_tokens.sum())),
        ):
            if count:
                messages.append(f"{who}: {count} {label}")
        return actions, DecodeReport(invalid_tokens=invalid.astype(np.int64), repaired=repaired, messages=messages)

    def _scatter(
        self, token_ids: np.ndarray, lengths: np.ndarray, starts: np.ndarray, rows: np.ndarray, batch: int, width: int
    ) -> np.ndarray:
        """Write the coefficients of T tokens (ids, lengths, first positions, sample rows) into a (B, width) array.

        Every coefficient gets its token's row and start plus its offset inside the token; positions past
        ``width`` are cut off and positions no token reached stay 0.
        """
        out = np.zeros((batch, width), dtype=np.int64)
        if token_ids.size == 0:
            return out
        token_of = np.repeat(np.arange(token_ids.size), lengths)  # (E,) token of every coefficient
        first = np.cumsum(lengths) - lengths  # (T,) where each token's coefficients begin in the flat stream
        offset = np.arange(token_of.size) - first[token_of]  # (E,) offset inside its token
        position = starts[token_of] + offset  # (E,) position inside its chunk
        keep = position < width
        values = self._token_values[self._token_offsets[token_ids][token_of] + offset]  # (E,)
        out[rows[token_of][keep], position[keep]] = values[keep]
        return out

    # --- persistence -----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "action_dim": self.action_dim,
            "exec_horizon": self.exec_horizon,
            "plan_steps": self.plan_steps,
            "scale": self.scale,
            "vocab_size": self.codebook_size,
            "max_tokens": dict(self.max_tokens),  # longest code sequence per fitted mode
            "coefficient_bound": self.bound,  # integers in [-bound, bound] ...
            "char_base": CHAR_BASE,  # ... written as chr(char_base + bound + value)
            "bpe_file": BPE_FILE,
            "normalizers": self.normalizers.to_dict(),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / BPE_FILE, self.bpe.to_str())  # first, so a config never names a missing file
        atomic_write_json(directory / CONFIG_FILE, self.config())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "FastTokenizer":
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        config = read_config(config_path, cls.name)
        bpe_path = directory / str(config.get("bpe_file", BPE_FILE))
        if not bpe_path.is_file():
            raise ConfigError(f"{bpe_path}: BPE tokenizer file not found")
        try:
            bpe = Tokenizer.from_str(bpe_path.read_text(encoding="utf-8"))
        except Exception as error:  # the Rust side raises plain Exceptions for any malformed JSON
            raise ConfigError(f"{bpe_path}: cannot read the BPE tokenizer ({error})") from error
        try:
            max_tokens = config.get("max_tokens") or {}
            unknown = set(max_tokens) - set(MODES)
            if unknown:
                raise ConfigError(f"unknown modes in max_tokens: {sorted(unknown)}")
            settings = dict(
                action_dim=int(config["action_dim"]),
                exec_horizon=int(config["exec_horizon"]),
                plan_steps=int(config["plan_steps"]),
                scale=float(config["scale"]),
                max_tokens=max_tokens,
            )
            normalizers = ActionNormalizers.from_dict(config["normalizers"])
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as error:
            raise ConfigError(f"{config_path}: malformed tokenizer config ({type(error).__name__}: {error})") from error
        try:
            tokenizer = cls(normalizers, bpe, **settings)
        except ConfigError as error:
            raise ConfigError(f"{bpe_path} with {config_path}: {error}") from error
        if "coefficient_bound" in config and config["coefficient_bound"] != tokenizer.bound:
            raise ConfigError(
                f"{config_path}: coefficient_bound is {config['coefficient_bound']}, but scale and horizons give "
                f"{tokenizer.bound}"
            )
        return tokenizer
