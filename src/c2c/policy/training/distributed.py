"""Data-parallel policy training on CPUs and GPUs: the process group, DDP or FSDP2, and collectives.

Launchers: ``c2c policy train --num-processes N`` (one node; starts torchrun itself), ``torchrun`` and
``accelerate launch`` (one or several nodes). All of them set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``, which is
all this module reads: process ``r`` uses ``cuda:LOCAL_RANK`` with NCCL when training on GPUs, or the CPU with gloo.

Strategies (``--parallel``):
- ``ddp``: every process holds the whole model; gradients are all-reduced (torch ``DistributedDataParallel``).
- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``): every vision and decoder layer, then the whole model,
  is sharded across processes; weights, gradients, AdamW state and the EMA are held 1/N per process. This is what
  paligemma-3b needs on 80 GB GPUs. It runs over gloo too, so the sharded path is tested on CPUs.
- ``auto``: FSDP for the 3B presets, DDP otherwise (and FSDP when accelerate's config asks for it).

Why torch's own wrappers and not ``accelerate.Accelerator``: its FSDP plugin is not applied on CPU processes
(``Accelerator(cpu=True)`` falls back to DDP), so the sharded path could never be tested without a GPU. FSDP2 is
what accelerate's plugin calls on GPUs. accelerate's launcher still works; its mixed-precision and FSDP settings
are read from the environment and must agree with ``--precision`` and ``--parallel`` (a conflict is an error, never
silently ignored).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from c2c.errors import ConfigError

STRATEGIES = ("auto", "ddp", "fsdp")
LARGE_PRESETS = ("paligemma-3b", "paligemma-3b-multistream")


@dataclass(frozen=True)
class Launch:
    """Where this process stands, read from the launcher's environment before any data is touched."""

    world_size: int
    rank: int
    local_rank: int
    device: torch.device
    strategy: str  # ddp | fsdp (single process: ddp, which then does nothing)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_strategy(requested: str, preset: str, world_size: int) -> str:
    if requested not in STRATEGIES:
        raise ConfigError(f"--parallel must be one of {', '.join(STRATEGIES)}, got {requested!r}")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        raise ConfigError("accelerate's config asks for DeepSpeed, which c2c does not use; launch without it and "
                          "pass --parallel fsdp for sharded training")
    accelerate_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    if requested == "ddp" and accelerate_fsdp:
        raise ConfigError("accelerate's config asks for FSDP (ACCELERATE_USE_FSDP) but --parallel is ddp; pass "
                          "--parallel fsdp or auto, or launch with an accelerate config without FSDP")
    if requested == "auto":
        requested = "fsdp" if world_size > 1 and (preset in LARGE_PRESETS or accelerate_fsdp) else "ddp"
    return requested


def check_accelerate_precision(precision: str) -> None:
    """``accelerate launch --mixed_precision X`` must agree with ``--precision``."""
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()
    if asked and asked != "no" and not precision.startswith(asked):
        raise ConfigError(f"accelerate's config asks for mixed precision {asked!r} but --precision is {precision!r}; "
                          f"pass --precision {asked if asked == 'bf16' else 'bf16'} (fp16 is not supported)")
    if asked == "no" and precision != "fp32":
        raise ConfigError(f"accelerate's config turns mixed precision off but --precision is {precision!r}")


def read_launch(device: str, parallel: str = "auto", preset: str = "tiny", precision: str = "fp32",
                global_batch_size: int | None = None, batch_size: int = 1, grad_accum: int = 1) -> Launch:
    """Check the device, the world size and the batch split; nothing is initialised yet."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"launcher environment: RANK={rank} is not in [0, WORLD_SIZE={world})")
    check_accelerate_precision(precision)
    parsed = check_device(device)
    if parsed.type == "cuda" and world > 1:
        if parsed.index not in (None, local_rank) and world > 1:
            raise ConfigError(f"--device {device}: with several processes each uses cuda:LOCAL_RANK; pass --device "
                              "cuda")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) on this "
                              "node: start at most that many processes per node")
        parsed = torch.device("cuda", local_rank)
    if global_batch_size is not None and global_batch_size % (world * grad_accum):
        raise ConfigError(f"--global-batch-size {global_batch_size} is not divisible by {world} processes x "
                          f"{grad_accum} accumulation steps")
    strategy = resolve_strategy(parallel, preset, world)
    return Launch(world, rank, local_rank, parsed, strategy if world > 1 else "ddp")


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a ConfigError naming it when it is unknown or absent on this machine."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device: unknown device {device!r} (expected cpu, cuda or cuda:N)") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device: {device!r} is not supported (expected cpu, cuda or cuda:N)")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; train on "
                              "--device cpu, or install a CUDA build of torch on a machine with a GPU")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return parsed


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"launcher environment: {name}={raw!r} is not an integer") from None


class Processes:
    """This process's place among data-parallel processes, and the few collectives training needs."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self.rank, self.count = launch.rank, launch.world_size
        self.device = launch.device
        if launch.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if launch.device.type == "cuda" else "gloo"
            if launch.device.type == "cuda":
                torch.cuda.set_device(launch.device)
            torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30),
                                                 **({"device_id": launch.device} if backend == "nccl" else {}))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.launch.distributed and self.launch.strategy == "fsdp"

    def wrap(self, policy: nn.Module, precision: str) -> nn.Module:
        """DDP around the policy, or FSDP2 shards of its layers and model (in place); returns what to call."""
        if not self.launch.distributed:
            return policy
        if self.sharded:
            shard_policy(policy, precision)
            return policy
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(policy, device_ids=device_ids)

    def no_sync(self, module: nn.Module, skip: bool):
        """Skip the gradient reduction on all but the last micro-step of an accumulated step."""
        if not (self.launch.distributed and skip):
            return contextlib.nullcontext()
        if self.sharded:
            return _fsdp_no_sync(module)
        return module.no_sync()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        if not self.launch.distributed:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._collective_device)
        torch.distributed.all_reduce(tensor)
        return dict(zip(keys, (tensor / self.count).tolist()))

    def gather(self, value: Any) -> list[Any]:
        if not self.launch.distributed:
            return [value]
        gathered: list[Any] = [None] * self.count
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value`` on every process."""
        if not self.launch.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def wait(self) -> None:
        if self.launch.distributed:
            torch.distributed.barrier(**({"device_ids": [self.device.index]} if self.device.type == "cuda" else {}))

    def close(self) -> None:
        if self.launch.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The FSDP units: the elements of every ``layers`` ModuleList (SigLIP encoder, Gemma decoder, multi-stream
    decoder layers)."""
    units = []
    for name, child in module.named_modules():
        if name.rsplit(".", 1)[-1] == "layers" and isinstance(child, nn.ModuleList):
            units.extend(child)
    return units


def shard_policy(policy: nn.Module, precision: str) -> None:
    """FSDP2: each layer is its own unit, the rest of the model (embeddings, projector, LM head) the root's."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    options: dict[str, Any] = {}
    if precision == "bf16":  # fp32 master shards, bf16 all-gathered weights, fp32 gradient reduction
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for unit in shard_units(policy.model):
        fully_shard(unit, **options)
    fully_shard(policy.model, **options)


@contextlib.contextmanager
def _fsdp_no_sync(module: nn.Module):
    model = getattr(module, "model", module)
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
