"""Training checkpoints that scale: sharded tensor files written by every process, a small JSON for the step.

Layout of ``<out>/checkpoint/``::

    state.json        step, the settings that must match to resume, world size and strategy (written last)
    history.json      the loss curves so far
    .metadata, __R_0.distcp
                      torch.distributed.checkpoint (DCP) files: model, EMA and AdamW state. Under FSDP each
                      process writes its own shards (__R_0.distcp for rank R); under DDP or one process, rank 0
                      writes the replicated tensors.

A checkpoint is written into ``.checkpoint.tmp`` and renamed into place only when complete (the previous one is
moved aside first and removed after), so a kill at any moment leaves a loadable checkpoint. Resuming reads
``state.json`` alone to learn the step (``read_state``); the tensors are read straight into the live (sharded)
model and optimiser, on their own devices. DCP reshards on load, so an FSDP run may resume on another world size.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from c2c.errors import ConfigError
from c2c.utils.io import atomic_write_json

CHECKPOINT = "checkpoint"  # directory inside the training output directory
STATE_FILE = "state.json"
HISTORY_FILE = "history.json"
_TMP = ".checkpoint.tmp"
_OLD = ".checkpoint.old"


def checkpoint_dir(out: Path) -> Path | None:
    """The complete checkpoint in ``out`` (the moved-aside one when a kill fell between the two renames)."""
    for name in (CHECKPOINT, _OLD):
        path = Path(out) / name
        if (path / STATE_FILE).is_file():
            return path
    return None


def read_state(out: Path) -> dict[str, Any] | None:
    """``state.json`` of the checkpoint in ``out`` (step, settings), or None without one."""
    path = checkpoint_dir(out)
    if path is None:
        return None
    try:
        return json.loads((path / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path / STATE_FILE}: unreadable ({err}); remove {path} to start over") from None


def _tensor_state(model: nn.Module, optimizer: torch.optim.Optimizer, ema: dict[str, torch.Tensor]
                  ) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state, "ema": dict(ema)}


def save_checkpoint(out: Path, *, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    ema: dict[str, torch.Tensor], history: dict[str, list], settings: dict[str, Any],
                    processes: Any) -> Path:
    """Every process calls this; returns the checkpoint directory."""
    import torch.distributed.checkpoint as dcp

    out = Path(out)
    tmp, final, old = out / _TMP, out / CHECKPOINT, out / _OLD
    if processes.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    processes.wait()
    with _single_process_quiet():
        dcp.save(_tensor_state(model, optimizer, ema), checkpoint_id=str(tmp),
                 no_dist=not torch.distributed.is_initialized())
    processes.wait()
    if processes.is_main:
        atomic_write_json(tmp / HISTORY_FILE, history)
        atomic_write_json(tmp / STATE_FILE, {"step": step, "settings": settings, "world_size": processes.count,
                                             "strategy": processes.launch.strategy,
                                             "torch_rng": torch.get_rng_state().tolist()})
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    processes.wait()
    return final


def load_checkpoint(out: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    ema: dict[str, torch.Tensor], settings: dict[str, Any]) -> tuple[int, dict[str, list]]:
    """Read the checkpoint in ``out`` into the live model, optimiser and EMA tensors; returns (step, history)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    path = checkpoint_dir(out)
    if path is None:
        raise ConfigError(f"{Path(out) / CHECKPOINT}: no complete checkpoint to resume from")
    state = read_state(out)
    if state["settings"] != settings:
        changed = sorted(k for k in set(settings) | set(state["settings"])
                         if state["settings"].get(k) != settings.get(k))
        raise ConfigError(f"{path}: was written with other settings ({', '.join(changed)}); use a new --out to "
                          "start over")
    tensors = _tensor_state(model, optimizer, ema)
    try:
        with _single_process_quiet():
            dcp.load(tensors, checkpoint_id=str(path), no_dist=not torch.distributed.is_initialized())
    except Exception as err:  # DCP raises CheckpointException with every rank's traceback
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: cannot load the checkpoint's tensors ({first[:300]})") from None
    set_state_dict(model, optimizer, model_state_dict=tensors["model"], optim_state_dict=tensors["optimizer"])
    for name, value in tensors["ema"].items():
        if ema[name] is not value:
            ema[name].copy_(value)
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    history = json.loads((path / HISTORY_FILE).read_text())
    return int(state["step"]), history


@contextlib.contextmanager
def _single_process_quiet():
    """DCP warns that it assumes one process whenever no process group exists: that is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def full_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Whole (unsharded) CPU tensors of ``model``'s state, or of ``tensors`` (e.g. EMA shards keyed by parameter
    name); a collective under FSDP, so every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if tensors is None:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    full = {}
    for name, value in tensors.items():
        if hasattr(value, "full_tensor"):
            value = value.full_tensor()
        full[name] = value.detach().to("cpu")
    return full
