"""Held-out evaluation during policy training, the saved policy directory, curves and the metrics summary.

Held-out evaluation uses the EMA weights (paper C.3): teacher-forced loss and token accuracy per branch, and the L1
of greedily decoded exec chunks. Under data parallelism the whole weights are gathered from every process (FSDP
shards included) into an unsharded copy of the policy on the main process, which evaluates them on the training
device and writes the policy directory; that directory loads on one device or the CPU whatever trained it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from c2c.policy.policy import EMA_WEIGHTS_FILE, WEIGHTS_FILE, PlanExecutePolicy
from c2c.policy.training.checkpoint import full_state_dict
from c2c.policy.training.data import PolicyData
from c2c.policy.training.memory import WeightEMA, merge_lora


# --- evaluation --------------------------------------------------------------------------------------------------
def spread(frames: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` frames evenly spread over ``frames`` (a deterministic evaluation subset)."""
    if len(frames) <= count:
        return frames
    return frames[np.unique(np.linspace(0, len(frames) - 1, count).round().astype(int))]


@torch.no_grad()
def evaluate_policy(policy: PlanExecutePolicy, data: PolicyData, frames: np.ndarray, *, decode_frames: int = 64,
                    batch_size: int = 16) -> dict[str, float]:
    """Teacher-forced loss and token accuracy per branch on ``frames``, and the L1 of greedily decoded exec chunks
    against the true ones on up to ``decode_frames`` of them (normalized and dataset units; for scale, the
    tokenizer's own reconstruction L1 of the same chunks is the floor and a constant q01/q99-midpoint chunk is a
    trivial baseline)."""
    was_training = policy.training
    policy.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        _, metrics = policy(data.batch(chunk))
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
    result = {key: value / max(1, len(frames)) for key, value in sums.items()}
    decoded = spread(frames, decode_frames)
    if len(decoded):
        predicted = np.concatenate([policy.predict_action_chunk(data.batch(decoded[i:i + batch_size]))
                                    for i in range(0, len(decoded), batch_size)])  # (M, He, A)
        truth = data.exec_chunks[decoded]  # (M, He, A)
        tokenizer = policy.action_tokenizer
        floor = tokenizer.decode(data.codes["exec"][decoded].astype(np.int64), "exec")  # (M, He, A)
        normalize = policy.normalizers.action.normalize
        result["exec_l1"] = float(np.abs(normalize(predicted) - normalize(truth)).mean())
        result["exec_l1_raw"] = float(np.abs(predicted - truth).mean())
        result["exec_l1_tokenizer"] = float(np.abs(normalize(floor) - normalize(truth)).mean())
        result["exec_l1_midpoint"] = float(np.abs(normalize(truth)).mean())  # predicting the q01/q99 midpoint
        if "plan" in data.codes and getattr(policy.config, "has_plan", False):
            # The same exec chunks decoded after the TRUE plan tokens instead of the generated ones: how much of the
            # exec error comes from mistaken plans (the gap to exec_l1) rather than from the exec tokens themselves.
            suffix = policy.suffix
            codes = {mode: torch.as_tensor(data.codes[mode][decoded].astype(np.int64)) for mode in data.codes}
            true_plan = suffix.codes_to_ids(codes)[:, suffix.span("plan")]
            given = np.concatenate([
                policy.predict_action_chunk(data.batch(decoded[i:i + batch_size]),
                                            plan_ids=true_plan[i:i + batch_size].to(policy.device))
                for i in range(0, len(decoded), batch_size)])
            result["exec_l1_true_plan"] = float(np.abs(normalize(given) - normalize(truth)).mean())
    result["frames"], result["decoded_frames"] = float(len(frames)), float(len(decoded))
    policy.train(was_training)
    return result


class TrainingRun:
    """Held-out evaluation and the saved policy of a run: full (unsharded) weights are gathered from every
    process, loaded into the main process's CPU template and evaluated there, on the training device."""

    def __init__(self, config: Any, processes: Any, policy: PlanExecutePolicy,
                 template: PlanExecutePolicy | None, ema: WeightEMA, trainable: dict[str, torch.Tensor],
                 data: PolicyData) -> None:
        self.config, self.processes, self.policy, self.template = config, processes, policy, template
        self.ema, self.trainable, self.data = ema, trainable, data
        heldout = data.heldout_frames if len(data.heldout_frames) else data.train_frames
        self.eval_frames = spread(heldout, config.eval_frames)

    def gathered(self, averaged: bool) -> dict[str, torch.Tensor] | None:
        """The whole policy's weights (the EMA's where ``averaged``) on the main process; a collective."""
        weights = full_state_dict(self.policy)
        averages = full_state_dict(None, self.ema.averages) if averaged and self.ema.enabled else {}
        if not self.processes.is_main:
            return None
        for name, value in averages.items():
            weights[f"model.{name}"] = value
        return weights

    def _loaded(self, weights: dict[str, torch.Tensor]) -> PlanExecutePolicy:
        self.template.load_state_dict(weights)
        return self.template.to(self.processes.device)

    def _offload(self) -> None:
        if self.processes.device.type == "cuda":
            self.template.to("cpu")
            torch.cuda.empty_cache()

    def evaluate(self) -> dict[str, float] | None:
        weights = self.gathered(averaged=True)
        if weights is None:
            return None
        result = evaluate_policy(self._loaded(weights), self.data, self.eval_frames,
                                 decode_frames=self.config.decode_frames, batch_size=self.config.eval_batch_size)
        self._offload()
        return result

    def evaluate_and_log(self, history: dict[str, list], writer: Any, step: int) -> None:
        result = self.evaluate()
        if result is not None:
            history["heldout"].append({"step": step, **result})
            for key, value in result.items():
                writer.add_scalar(f"heldout/{key}", value, step)
        self.processes.wait()

    def _plain_model(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A CPU copy of the network holding ``weights``, LoRA adapters merged (the plain architecture)."""
        self.template.load_state_dict(weights)
        model = copy.deepcopy(self.template.model).to("cpu")
        if self.config.lora_rank:
            merge_lora(model)
        return model

    def save(self, live: dict[str, torch.Tensor], averaged: dict[str, torch.Tensor] | None) -> None:
        """The policy directory, model and EMA weights in one save (complete or absent), loadable on one device or
        the CPU."""
        files = {WEIGHTS_FILE: self._plain_model(live)}
        if averaged is not None:
            files[EMA_WEIGHTS_FILE] = self._plain_model(averaged)
        template = self.template
        saved = PlanExecutePolicy(template.config, files[WEIGHTS_FILE], template.action_tokenizer,
                                  template.instruction_tokenizer)
        saved.save_pretrained(self.config.out, weights=files)

    def finish(self, history: dict[str, list], writer: Any) -> dict[str, Any]:
        """Final evaluation, the policy checkpoint (model + EMA weights), curves and metrics (main process)."""
        config, out = self.config, Path(self.config.out)
        if not history["heldout"] or history["heldout"][-1]["step"] != config.steps:
            heldout = self.evaluate()
            if heldout is not None:
                history["heldout"].append({"step": config.steps, **heldout})
                for key, value in heldout.items():
                    writer.add_scalar(f"heldout/{key}", value, config.steps)
        live = self.gathered(averaged=False)
        averaged = self.gathered(averaged=True) if self.ema.enabled else None
        if not self.processes.is_main:
            return {}
        writer.close()
        self.save(live, averaged)
        plot_curves(history, out / "curves.png", title=f"{config.variant} ({config.preset})")
        recent = history["train"][-min(50, len(history["train"])):]
        return {
            "variant": config.variant, "preset": config.preset, "steps": config.steps,
            "processes": self.processes.count,
            "effective_batch_size": config.batch_size * config.grad_accum * self.processes.count,
            "parameters": sum(p.numel() for p in self.template.model.parameters()),
            "lr": config.lr, "warmup_steps": config.warmup_steps, "ema_decay": config.ema_decay, "ema": config.ema,
            "precision": config.precision,
            "train_recent": {key: float(np.mean([row[key] for row in recent])) for key in ("loss", "accuracy/exec")},
            "heldout": history["heldout"][-1], "heldout_episodes": self.data.info["heldout_episodes"],
            "eval_split": "heldout" if len(self.data.heldout_frames) else "train (no held-out episodes)",
            "codes_computed_this_run": self.data.info["codes_computed"],
            "threads": history.get("threads", []),  # the intra-op thread schedule: [{"step", "threads"}, ...]
        }


def plot_curves(history: dict[str, list], path: Path, title: str = "") -> None:
    """Loss and exec token accuracy vs step: training (raw and smoothed) and held-out (EMA weights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    train, held = history["train"], history["heldout"]
    for axis, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy/exec", "exec token accuracy")):
        steps = np.array([row["step"] for row in train])
        values = np.array([row[key] for row in train])
        axis.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=0.8)
        window = max(1, len(values) // 50)
        if len(values) >= window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1:], smooth, color="tab:blue", label="train")
        if held:
            axis.plot([row["step"] for row in held], [row[key] for row in held], "o-", color="tab:orange",
                      label="held-out (EMA)")
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)


def format_metrics(metrics: dict[str, Any]) -> str:
    held = metrics["heldout"]
    header = (f"policy ({metrics['variant']}, {metrics['preset']}, {metrics['parameters'] / 1e6:.2f} M parameters), "
              f"{metrics['steps']} steps, {metrics['samples_per_s']} samples/s, evaluated on {metrics['eval_split']}")
    lines = [header]
    for branch in ("plan", "exec", "end"):
        if f"accuracy/{branch}" in held:
            lines.append(f"  {branch}: token accuracy {held[f'accuracy/{branch}']:.3f}, loss "
                         f"{held[f'loss/{branch}']:.3f} (teacher forced, EMA weights)")
    if "exec_l1" in held:
        lines.append(f"  decoded exec chunks ({int(held['decoded_frames'])} frames, greedy): L1 {held['exec_l1']:.4f} "
                     f"normalized, {held['exec_l1_raw']:.5f} dataset units (tokenizer floor "
                     f"{held['exec_l1_tokenizer']:.4f}; predicting the midpoint {held['exec_l1_midpoint']:.4f})")
    return "\n".join(lines)
