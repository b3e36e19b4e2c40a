"""`c2c tokenizer eval`: held-out metrics of a saved RVQ tokenizer, written next to it as eval.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from c2c.data.windows import WindowSpec
from c2c.errors import ConfigError
from c2c.tokenizer.data import ChunkSplit, load_chunks
from c2c.tokenizer.rvq_tokenizer import RVQTokenizer
from c2c.tokenizer.train import evaluate
from c2c.utils.io import atomic_write_json


def load_saved_split(directory: Path, dataset: Path | None = None
                     ) -> tuple[RVQTokenizer, ChunkSplit, ChunkSplit, Path]:
    """A saved tokenizer with the (train, held-out) chunks of a dataset, split by its own rule and windows."""
    directory = Path(directory)
    train_config_path = directory / "train_config.json"
    if not train_config_path.is_file():
        raise ConfigError(f"{train_config_path}: missing (was this tokenizer trained with `c2c tokenizer train`?)")
    train_config = json.loads(train_config_path.read_text())
    tokenizer = RVQTokenizer.from_pretrained(directory)
    spec = WindowSpec(**{**train_config["window_spec"], "gripper_dims": tuple(train_config["window_spec"]["gripper_dims"])})
    dataset = Path(dataset or train_config["dataset"])
    train, held, _, _ = load_chunks(dataset, spec, train_config["holdout_fraction"], train_config["seed"])
    return tokenizer, train, held, dataset


def evaluate_saved_tokenizer(directory: Path, dataset: Path | None = None, json_out: Path | None = None
                             ) -> dict[str, Any]:
    """Metrics on the held-out episodes, written to ``<directory>/eval.json`` (and ``json_out`` when given)."""
    tokenizer, _, held, dataset = load_saved_split(directory, dataset)
    metrics = {**evaluate(tokenizer, held), "variant": tokenizer.variant, "dataset": str(dataset),
               "tokens_per_chunk": tokenizer.tokens_per_chunk()}
    atomic_write_json(Path(directory) / "eval.json", metrics)
    if json_out is not None:
        atomic_write_json(Path(json_out), metrics)
    return metrics
