"""Token layout: where action ids live in the vocabulary, the suffix order, and the prefix-LM attention rules.

Sequence (paper Sec. 3.2, Appendix C.1)::

    prefix (bidirectional)                                   suffix (causal)
    [image tokens of camera 1][camera 2 ...][instruction][state] [plan tokens][exec tokens][end]

Vocabulary. A fresh backbone gets the action ids *appended* after its text vocabulary (and the state bins, if
any); a pretrained PaliGemma keeps its size and the action ids overwrite the *tail* of its vocabulary, as
pi0-FAST does: its last 128 ids (PaliGemma's ``<seg>`` tokens) are left alone and the ids right below them are
taken, which overwrites the 1,024 ``<loc>`` detection tokens and then the rarest Gemma text tokens. For the
paper's 3 x 4096 codes that is ids 244,735-257,022 (actions) and 257,023 (end) of 257,152; the separate-tokenizer
variant takes twice as many action ids (232,447-257,022); ``bins`` state tokens take 256 more below them. The size
is the backbone's own embedding rows: 257,152 for pi0-FAST (``pi0fast.py``), 257,216 for transformers' PaliGemma-3B
(padded past its tokenizer). ``check_pretrained_text_ids`` refuses a layout whose ids hold a special text token.

State. Two encodings, chosen by ``PolicyConfig.state_encoding``:

- ``projection`` (default): the q01/q99-normalised state goes through one learned linear layer into a single
  prefix embedding. It keeps the state's full precision, costs one token, and matches the paper's C.3 model,
  whose proprio stream is a continuous input rather than text.
- ``bins``: pi0-FAST's way, each dimension cut into 256 uniform bins over [-1, 1] and fed as one token per
  dimension with its own ids in the vocabulary; available for comparison with the pi0-FAST recipe.

Suffix order. A branch's codes (N latent positions x R residual levels) are flattened either ``codebook-major``
(all level-1 tokens, then level 2, then level 3, as FASTer does: the coarse reconstruction of the whole chunk comes
first) or ``latent-major`` (the R levels of one position, then the next position).

Variable length (the ``fast`` variant: FAST, pi0-FAST's DCT + BPE tokens). The exec branch is N positions, N the
tokenizer's length cap (``tokens_per_chunk("exec")``: the longest sequence it was fitted on); a chunk is its FAST ids,
then the end token, then end tokens up to the cap, and the suffix's own end position closes it as for every
variant (so the longest chunk, N ids, ends there). The end id is the vocabulary layout's ``end_id``, which lies right
after the action ids in both layouts, so every position of such a branch keeps one contiguous valid range, the K
FAST ids and the end. Padding is masked, not trained: the positions after the first end (``padding``; the
suffix's last position too when the chunk ended earlier) are fed as end ids but left out of the loss and the
metrics, so the loss is over the chunk's ids and its end token only, as in pi0-FAST, and the accuracy is not
inflated by sure predictions. Decoding forces the end id there (``ended_after``), so the model is never asked to
predict them and a generated sequence has exactly the training form. In codes the padding is ``PAD_CODE`` (-1), as
the FAST tokenizer writes it.

Attention. Masks come from named token groups and one rule (Octo-style), never by hand: a group is either a
bidirectional prefix group or a causal group; prefix queries see every real prefix key; causal queries see every
real prefix key and causal keys at or before themselves; padding keys are hidden from everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from einops import rearrange

from c2c.errors import ConfigError
from c2c.tokenizer.base import PAD_CODE

PALIGEMMA_RESERVED_TAIL = 128  # PaliGemma's <seg> tokens: pi0-FAST keeps them and places actions below them
BRANCHES = ("plan", "exec", "end")  # suffix branch names, in order (metric names use them)


@dataclass(frozen=True)
class VocabularyLayout:
    """Id ranges of the backbone vocabulary: text, optional state bins, action codes, the end token."""

    text_size: int  # ids [0, text_size) are left to the instruction tokenizer
    state_start: int  # first state-bin id (state_bins ids); equals action_start when there are none
    action_start: int  # action id = action_start + tokenizer token id (level r code k -> r K + k, ...)
    action_size: int  # the action tokenizer's vocabulary size
    end_id: int  # the end-of-suffix token
    total: int  # vocabulary size of the backbone

    @classmethod
    def appended(cls, text_size: int, action_size: int, state_bins: int = 0) -> VocabularyLayout:
        """Fresh backbone: [text][state bins][actions][end]."""
        action_start = text_size + state_bins
        end_id = action_start + action_size
        return cls(text_size, text_size, action_start, action_size, end_id, end_id + 1)

    @classmethod
    def tail(cls, vocab_size: int, action_size: int, state_bins: int = 0) -> VocabularyLayout:
        """Pretrained PaliGemma: [text ...][state bins][actions][end][128 reserved] at the top of its vocabulary
        (``vocab_size``: the backbone's embedding rows)."""
        end_id = vocab_size - PALIGEMMA_RESERVED_TAIL - 1
        action_start = end_id - action_size
        state_start = action_start - state_bins
        if state_start < vocab_size // 2:
            raise ConfigError(f"{action_size} action ids + {state_bins} state bins do not fit in the tail of a "
                              f"{vocab_size}-id vocabulary")
        return cls(state_start, state_start, action_start, action_size, end_id, vocab_size)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


CONTROL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")  # Gemma's control tokens, special even when not marked so


def special_token_ids(tokenizer: Any) -> dict[int, str]:
    """{id: token} of a ``tokenizers.Tokenizer``'s special added tokens and Gemma's control tokens it knows."""
    found = {int(i): token.content for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    for token in CONTROL_TOKENS:
        index = tokenizer.token_to_id(token)
        if index is not None:
            found[int(index)] = token
    return found


def check_pretrained_text_ids(vocabulary: VocabularyLayout, tokenizer: Any, where: str = "text tokenizer") -> None:
    """A pretrained backbone's text tokenizer must fit its embedding rows, and the ids taken for state bins, actions
    and the end token must hold none of its special or control tokens (they would no longer mean what they did)."""
    special = special_token_ids(tokenizer)
    top = max((int(i) for i in tokenizer.get_vocab(with_added_tokens=False).values() if i not in special), default=-1)
    if top >= vocabulary.total:
        raise ConfigError(f"{where}: token id {top} lies past the backbone's {vocabulary.total} embedding rows")
    taken = sorted((i, token) for i, token in special.items() if vocabulary.state_start <= i <= vocabulary.end_id)
    if taken:
        listed = ", ".join(f"{token!r} ({i})" for i, token in taken[:3]) + (" ..." if len(taken) > 3 else "")
        raise ConfigError(f"{where}: special tokens {listed} lie in the ids [{vocabulary.state_start}, "
                          f"{vocabulary.end_id}] taken by state bins, actions and the end token")


@dataclass(frozen=True)
class Branch:
    """One action branch of the suffix: N latent positions x R levels of K codes."""

    name: str  # "plan" or "exec"
    positions: int  # N
    levels: int  # R
    codebook_size: int  # K
    first_id: int  # backbone id of level 0, code 0
    ends: bool = False  # variable length: the end id (first_id + K) is valid at every position; padding after it

    @property
    def length(self) -> int:
        return self.positions * self.levels


class SuffixLayout:
    """Maps branch codes (B, N, R) to suffix ids (B, T) and back, and knows the ids valid at each position.

    Example::

        layout = SuffixLayout(branches, end_id, order="codebook-major")
        ids = layout.codes_to_ids({"plan": plan_codes, "exec": exec_codes})   # (B, T), end token last
        codes = layout.ids_to_codes(ids)                                       # {"plan": (B, N, R), ...}
    """

    def __init__(self, branches: Sequence[Branch], end_id: int, order: str = "codebook-major") -> None:
        if order not in ("codebook-major", "latent-major"):
            raise ConfigError(f"unknown token order {order!r}; expected 'codebook-major' or 'latent-major'")
        self.branches = tuple(branches)
        self.end_id = end_id
        self.order = order
        low, high, branch_index = [], [], []
        for index, branch in enumerate(self.branches):
            if branch.ends and (branch.levels != 1 or branch.first_id + branch.codebook_size != end_id
                                or index != len(self.branches) - 1):
                raise ConfigError(f"variable-length branch {branch.name!r} must be the last, of one level, with the "
                                  f"end id {end_id} right after its {branch.codebook_size} ids (first id "
                                  f"{branch.first_id})")
            levels = self._levels(branch)  # (N R,)
            low.append(branch.first_id + levels * branch.codebook_size)
            high.append(low[-1] + branch.codebook_size + int(branch.ends))  # + the end id
            branch_index.append(torch.full((branch.length,), BRANCHES.index(branch.name)))
        low.append(torch.tensor([end_id]))
        high.append(torch.tensor([end_id + 1]))
        branch_index.append(torch.tensor([BRANCHES.index("end")]))
        self.valid_low = torch.cat(low)  # (T,) first valid id at each suffix position
        self.valid_high = torch.cat(high)  # (T,) one past the last valid id
        self.branch_index = torch.cat(branch_index)  # (T,) index into BRANCHES
        self.ends_at = torch.cat([torch.full((b.length,), b.ends) for b in self.branches]
                                 + [torch.tensor([False])])  # (T,) positions where the end may be generated

    @property
    def variable(self) -> bool:
        """True when a branch is variable-length (the end id may come before the last position)."""
        return any(branch.ends for branch in self.branches)

    def _levels(self, branch: Branch) -> torch.Tensor:
        """Residual level of each flattened position of a branch."""
        n, r = branch.positions, branch.levels
        levels = torch.arange(r).repeat_interleave(n) if self.order == "codebook-major" else torch.arange(r).repeat(n)
        return levels  # (N R,)

    @property
    def length(self) -> int:
        """T: suffix tokens including the end token."""
        return int(self.valid_low.numel())

    def branch(self, name: str) -> Branch:
        for branch in self.branches:
            if branch.name == name:
                return branch
        raise ConfigError(f"this policy has no {name!r} branch (branches: {[b.name for b in self.branches]})")

    def span(self, name: str) -> slice:
        """Positions of a branch (or "end") in the suffix."""
        start = 0
        for branch in self.branches:
            if branch.name == name:
                return slice(start, start + branch.length)
            start += branch.length
        if name == "end":
            return slice(start, start + 1)
        raise ConfigError(f"this policy has no {name!r} branch")

    def flatten(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N, R) codes -> (B, N R) in the suffix order."""
        pattern = "b n r -> b (r n)" if self.order == "codebook-major" else "b n r -> b (n r)"
        return rearrange(codes, pattern)

    def unflatten(self, flat: torch.Tensor, branch: Branch) -> torch.Tensor:
        """(B, N R) in the suffix order -> (B, N, R) codes."""
        if self.order == "codebook-major":
            return rearrange(flat, "b (r n) -> b n r", r=branch.levels)
        return rearrange(flat, "b (n r) -> b n r", r=branch.levels)

    def codes_to_ids(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        """{branch: (B, N, R) codes in [0, K)} -> (B, T) backbone ids, the end token last."""
        parts = []
        for branch in self.branches:
            if branch.name not in codes:
                raise ConfigError(f"missing {branch.name!r} codes (the suffix has {[b.name for b in self.branches]})")
            span = self.span(branch.name)
            flat = self.flatten(codes[branch.name].long())  # (B, N R)
            ids = flat + self.valid_low[span].to(flat.device)
            if branch.ends:  # PAD_CODE ends the chunk: the end id there and at every later position
                ids = ids.masked_fill((flat < 0).cummax(dim=1).values, self.end_id)
            parts.append(ids)
        batch = parts[0].shape[0]
        parts.append(torch.full((batch, 1), self.end_id, dtype=torch.long, device=parts[0].device))
        return torch.cat(parts, dim=1)  # (B, T)

    def ids_to_codes(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T) or (B, T - 1) backbone ids (end token optional) -> {branch: (B, N, R) codes}."""
        codes = {}
        for branch in self.branches:
            span = self.span(branch.name)
            flat = ids[:, span] - self.valid_low[span].to(ids.device)  # (B, N R)
            if branch.ends:  # the first end and everything after it are padding
                flat = flat.masked_fill(self.ended_after(ids[:, span], inclusive=True), PAD_CODE)
            codes[branch.name] = self.unflatten(flat, branch)
        return codes

    def ended_after(self, ids: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
        """(B, n) ids of a variable-length branch -> (B, n) bool: an end id came before each position (or at it,
        ``inclusive``). Positions marked here are padding: decoding forces the end id at them."""
        ended = (ids == self.end_id).cummax(dim=1).values  # (B, n): at or after the first end
        if inclusive:
            return ended
        return torch.cat([ended.new_zeros(ended.shape[0], 1), ended[:, :-1]], dim=1)

    def padding(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) suffix ids -> (B, T) bool: positions after the first end id of a variable-length branch (the
        suffix's last position included); all False for fixed-length suffixes."""
        ends = (ids == self.end_id) & self.ends_at.to(ids.device)  # (B, T): ends generated inside the branch
        seen = ends.long().cumsum(dim=1) > 0  # (B, T): at or after the first of them
        return torch.cat([seen.new_zeros(seen.shape[0], 1), seen[:, :-1]], dim=1)

    def unended(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) suffix ids -> (B,) bool: the variable-length branch holds no end id (its sequence ran to the cap
        and only the suffix's last, forced end closes it). All False for fixed-length suffixes."""
        ends = self.ends_at.to(ids.device)
        if not bool(ends.any()):
            return torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        return ~(ids[:, :ends.numel()][:, ends] == self.end_id).any(dim=1)

    def is_valid(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, t) ids of the first t suffix positions -> (B, t) bool: each id lies in its position's range."""
        t = ids.shape[1]
        low, high = self.valid_low[:t].to(ids.device), self.valid_high[:t].to(ids.device)
        return (ids >= low) & (ids < high)


# --- attention rules -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenGroup:
    """A named run of consecutive tokens with one attention rule."""

    name: str  # e.g. "image.corner2", "instruction", "state", "suffix"
    length: int
    causal: bool  # False: bidirectional prefix group; True: autoregressive suffix group


def group_causal_flags(groups: Sequence[TokenGroup]) -> torch.Tensor:
    """(T,) bool: True where a token belongs to a causal group. Prefix groups must come first."""
    flags = torch.cat([torch.full((g.length,), g.causal, dtype=torch.bool) for g in groups])
    if flags.numel() and (flags[1:].long() - flags[:-1].long()).lt(0).any():
        raise ConfigError(f"prefix groups must precede causal groups: {[g.name for g in groups]}")
    return flags


def attention_mask(groups: Sequence[TokenGroup], key_valid: torch.Tensor, last: int | None = None) -> torch.Tensor:
    """Prefix-LM mask from group rules: (B, 1, T, T) bool, True where query t may attend to key s.

    ``key_valid`` (B, T) marks real tokens (False: padding). Every token also sees itself, so no row is empty.
    ``last``: only the rows of the last ``last`` queries, (B, 1, last, T) (what a cached decoding step needs).
    """
    causal = group_causal_flags(groups).to(key_valid.device)  # (T,)
    length = causal.numel()
    if key_valid.shape[1] != length:
        raise ConfigError(f"key_valid covers {key_valid.shape[1]} tokens but the groups cover {length}")
    keys = torch.arange(length, device=key_valid.device)  # (T,)
    queries = keys if last is None else keys[length - last:]  # (q,)
    earlier_or_same = keys[None, :] <= queries[:, None]  # (q, T) key s <= query t
    rule = ~causal[None, :] | (causal[queries][:, None] & earlier_or_same)  # (q, T) prefix key, or causal & not later
    allowed = (rule[None] & key_valid[:, None, :]) | (keys[None, :] == queries[:, None])[None]  # (B, q, T)
    return allowed[:, None]  # (B, 1, q, T)


def positions_from_valid(key_valid: torch.Tensor) -> torch.Tensor:
    """(B, T) position ids that skip padding, 1-based like PaliGemma's: real tokens get 1, 2, 3, ..."""
    return torch.cumsum(key_valid.long(), dim=1)  # (B, T)


# --- state bins --------------------------------------------------------------------------------------------------
def state_to_bins(normalized_state: torch.Tensor, bins: int) -> torch.Tensor:
    """(B, S) state in [-1, 1] -> (B, S) bin indices in [0, bins), uniform bins as in pi0-FAST."""
    scaled = (normalized_state.clamp(-1.0, 1.0) + 1.0) / 2.0 * bins  # (B, S) in [0, bins]
    return scaled.long().clamp(max=bins - 1)


# --- single-level tokenizers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkShape:
    """The chunk sizes a policy checks its action tokenizer against (what ``RVQTokenizer.config`` carries)."""

    action_dim: int  # A
    horizon: int  # He: steps of an exec chunk


VARIABLE_LENGTH = ("fast",)  # tokenizer types whose chunks have a variable number of tokens (PAD_CODE after the end)


class SingleLevelActions:
    """A binning (or FAST) tokenizer through the interface the policy uses of an RVQ tokenizer.

    ``variant`` is the tokenizer's type (matched against ``PolicyConfig.tokenizer_variants``), ``config`` its
    :class:`ChunkShape`, ``vocabulary_size`` its ids and ``same_as`` compares saved configs; encoding, decoding,
    statistics and saving are the tokenizer's own. In the suffix an exec chunk of a binning tokenizer is He x A
    positions of one level, each with the same 256 ids (``suffix_for``); a FAST chunk (``variable_length``) is its
    ids and the end token within ``tokens_per_chunk("exec")`` positions (the module docstring's variable length).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.config = ChunkShape(int(tokenizer.action_dim), int(tokenizer.exec_horizon))

    name = property(lambda self: self.tokenizer.name)
    variant = property(lambda self: self.tokenizer.name)
    normalizers = property(lambda self: self.tokenizer.normalizers)
    codebook_size = property(lambda self: self.tokenizer.codebook_size)
    vocabulary_size = property(lambda self: self.tokenizer.codebook_size)
    num_levels = property(lambda self: self.tokenizer.num_levels)
    variable_length = property(lambda self: self.tokenizer.name in VARIABLE_LENGTH)

    def tokens_per_chunk(self, mode: str = "exec") -> int:
        return self.tokenizer.tokens_per_chunk(mode)

    def encode(self, actions: Any, mode: str = "exec") -> Any:
        return self.tokenizer.encode(actions, mode)

    def decode(self, codes: Any, mode: str = "exec", **options: Any) -> Any:
        return self.tokenizer.decode(codes, mode, **options)

    def save_pretrained(self, directory: Any) -> Any:
        return self.tokenizer.save_pretrained(directory)

    def same_as(self, other: object) -> bool:
        """Same type and saved config (statistics included; a FAST tokenizer's merges too)."""
        mine, theirs = self.tokenizer, getattr(other, "tokenizer", None)
        if type(mine) is not type(theirs) or mine.config() != theirs.config():
            return False
        return getattr(mine, "bpe", None) is None or mine.bpe.to_str() == theirs.bpe.to_str()


def as_action_tokenizer(tokenizer: Any) -> Any:
    """An RVQ tokenizer (or a ``regress`` policy's statistics) as it is; a single-level one wrapped
    (:class:`SingleLevelActions`)."""
    if hasattr(tokenizer, "variant"):
        return tokenizer
    return SingleLevelActions(tokenizer)
