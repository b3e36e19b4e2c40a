"""Action tokenizers: the joint-mode residual-VQ codec (paper Sec. 3.1), its ablations and baselines.

All implement :class:`c2c.tokenizer.base.ActionTokenizer`; :func:`load_tokenizer` opens any saved one by the
``type`` recorded in its ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from c2c.errors import ConfigError

TOKENIZER_TYPES = ("rvq", "binning", "fast")


def load_tokenizer(directory: str | Path):
    """Open a saved tokenizer of any type."""
    config_path = Path(directory) / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: missing (not a saved tokenizer directory)")
    try:
        kind = json.loads(config_path.read_text()).get("type")
    except json.JSONDecodeError as err:
        raise ConfigError(f"{config_path}: not valid JSON ({err.msg})") from None
    if kind == "rvq":
        from c2c.tokenizer.rvq_tokenizer import RVQTokenizer

        return RVQTokenizer.from_pretrained(directory)
    if kind == "binning":
        from c2c.tokenizer.binning import BinningTokenizer

        return BinningTokenizer.from_pretrained(directory)
    if kind == "fast":
        from c2c.tokenizer.fast import FastTokenizer

        return FastTokenizer.from_pretrained(directory)
    raise ConfigError(f"{config_path}: unknown tokenizer type {kind!r} (known: {', '.join(TOKENIZER_TYPES)})")
