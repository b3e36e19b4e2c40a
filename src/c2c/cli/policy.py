"""``c2c policy train``: train a plan-then-execute policy variant (one process, or several data-parallel ones)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from c2c.cli.options import comma_list


def add_policy_commands(subparsers: argparse._SubParsersAction) -> None:
    policy = subparsers.add_parser("policy", help="train plan-then-execute VLA policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)

    train = policy_sub.add_parser(
        "train",
        help="train a policy variant on a dataset with a frozen action tokenizer",
        description="Teacher-forced training of the plan-then-execute policy (Eq. 9) on a LeRobot v3 dataset, with "
        "the tokenizer's held-out episodes kept aside. Rerunning the same command resumes from the last checkpoint "
        "in --out. --num-processes N runs N data-parallel processes on this node (one per GPU over NCCL with "
        "--device cuda, else CPU processes over gloo); 'torchrun' or 'accelerate launch' with '-m c2c policy train "
        "...' does the same on one or several nodes (docs/training-at-scale.md).",
    )
    train.add_argument("--dataset", type=Path, required=True, help="LeRobot v3 dataset directory")
    train.add_argument("--tokenizer", type=Path, default=None,
                       help="trained action tokenizer directory (RVQ variants; binning / fast: a binning / FAST "
                       "tokenizer, or none to fit one on the dataset; regress takes none)")
    train.add_argument("--out", type=Path, required=True, help="output directory (a policy checkpoint)")
    train.add_argument("--variant", default="plan",
                       help="plan (default) | plan-hp40 | noplan | separate | regress (continuous chunk head, L1; no "
                       "tokenizer) | binning (exec tokens, 256 bins per action dimension) | fast (exec FAST tokens: DCT + BPE, "
                       "variable length up to the tokenizer's cap, pi0-FAST)")
    train.add_argument("--preset", default="tiny", help="backbone preset: tiny (default) | nano | debug | paligemma-3b | tiny-multistream | "
                       "paligemma-3b-multistream (App. C.3: VLM, proprio and action streams)")
    train.add_argument("--backbone-path", default=None, help="local PaliGemma directory (paligemma-3b)")
    train.add_argument("--cameras", type=comma_list, default=None,
                       help="comma list of cameras, primary first (default: all of the dataset's)")
    train.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    train.add_argument("--batch-size", type=int, default=16, help="samples per process and micro-step (default 16)")
    train.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimisation step (default 1)")
    train.add_argument("--lr", type=float, default=None,
                       help="peak AdamW learning rate (default: 3e-4 tiny, 2e-3 nano, 5e-4 tiny-multistream, 2.5e-5 "
                       "paligemma-3b as in the paper)")
    train.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: the preset's)")
    train.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: the preset's)")
    train.add_argument("--ema-decay", type=float, default=None, help="EMA decay of the weights (default 0.999)")
    train.add_argument("--precision", default="fp32",
                       help="fp32 (default; measured faster on CPU) | bf16 (fp32 master weights, bf16 compute) | "
                       "bf16-weights (pi0-FAST's: bf16 weights, fp32 norms and patch/position embeddings)")
    train.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute vision and decoder layers in the backward pass (less activation memory)")
    train.add_argument("--freeze-vision", action="store_true", help="keep the vision tower's weights fixed")
    train.add_argument("--lora-rank", type=int, default=0,
                       help="LoRA adapters of this rank on the decoder, base weights frozen (default 0: full)")
    train.add_argument("--ema", default="on", help="on (default) | cpu | bf16 | off: where the weight EMA lives")
    train.add_argument("--parallel", default="auto",
                       help="auto (default: FSDP for the 3B presets, else DDP) | ddp | fsdp, with several processes")
    train.add_argument("--global-batch-size", type=int, default=None,
                       help="samples per optimisation step over all processes (sets --batch-size per process)")
    train.add_argument("--loader", default="auto",
                       help="auto (default: memory when the images fit --max-image-gb) | memory | stream (decode "
                       "the frames of each batch from the dataset's files)")
    train.add_argument("--workers", type=int, default=0,
                       help="DataLoader workers per process building batches ahead (default 0: in-process)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    train.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations (default 500)")
    train.add_argument("--decode-frames", type=int, default=64,
                       help="held-out frames decoded greedily for the exec-chunk L1 (default 64)")
    train.add_argument("--max-image-gb", type=float, default=8.0,
                       help="images over this size are streamed (--loader auto) or refused (--loader memory) "
                       "(default 8 GiB)")
    train.add_argument("--resize-images", action="store_true",
                       help="resize images to the preset's size with PIL (default: a size mismatch is an error)")
    train.add_argument("--image-shift", type=int, default=0,
                       help="random-shift augmentation of training images, in pixels (default 0: off)")
    train.add_argument("--plan-input-noise", type=float, default=0.0,
                       help="plan variants: probability that a plan code the decoder reads is replaced by a random "
                       "one (targets stay true), so exec learns to follow imperfect plans (default 0: the paper's "
                       "teacher forcing)")
    train.add_argument("--device", default="cpu",
                       help="cpu (default) | cuda | cuda:N: where the weights and batches live")
    train.add_argument("--num-processes", type=int, default=1,
                       help="data-parallel processes on this node (default 1; with --device cuda one per GPU)")
    train.add_argument("--resume", action="store_true", help="require a checkpoint in --out to continue from")
    train.add_argument("--init-from", type=Path, default=None,
                       help="start from this trained policy's weights (fine-tuning, e.g. on a dataset extended by "
                       "c2c data metaworld-takeover); same backbone, variant, cameras and tokenizer")

    def run_train(args: argparse.Namespace) -> int:
        from c2c.policy.training.config import PolicyTrainConfig
        from c2c.policy.training.evaluation import format_metrics
        from c2c.policy.training.launch import launch_processes
        from c2c.policy.training.loop import train_policy

        config = PolicyTrainConfig(
            dataset=str(args.dataset), tokenizer=None if args.tokenizer is None else str(args.tokenizer),
            out=str(args.out), variant=args.variant,
            preset=args.preset, backbone_path=args.backbone_path, cameras=args.cameras, steps=args.steps,
            batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay, ema_decay=args.ema_decay, precision=args.precision, seed=args.seed,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, decode_frames=args.decode_frames,
            max_image_gb=args.max_image_gb, resize_images=args.resize_images, image_shift=args.image_shift,
            plan_input_noise=args.plan_input_noise,
            device=args.device, init_from=None if args.init_from is None else str(args.init_from),
            gradient_checkpointing=args.gradient_checkpointing, freeze_vision=args.freeze_vision,
            lora_rank=args.lora_rank, ema=args.ema, parallel=args.parallel, global_batch_size=args.global_batch_size,
            loader=args.loader, workers=args.workers,
        )
        if args.num_processes > 1 and "WORLD_SIZE" not in os.environ:
            metrics = launch_processes(config, args.num_processes, resume=args.resume)
        else:
            metrics = train_policy(config, resume=args.resume)
        if metrics is not None:  # None: a non-main process of a data-parallel run
            print(format_metrics(metrics))
            print(f"saved to {args.out} (EMA weights in ema.safetensors; metrics.json, curves.png, tensorboard/)")
        return 0

    train.set_defaults(func=run_train)
