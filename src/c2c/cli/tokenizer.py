"""``c2c tokenizer train|eval``: train an action tokenizer on a dataset, and evaluate a trained one."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tokenizer_commands(subparsers: argparse._SubParsersAction) -> None:
    tok = subparsers.add_parser("tokenizer", help="train and evaluate action tokenizers")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True)

    train = tok_sub.add_parser(
        "train",
        help="train the joint-mode residual-VQ action tokenizer (or an ablation variant)",
        description="Train on the exec chunks and coarse plans (Eq. 3-4) of a LeRobot v3 dataset, with held-out "
        "episodes kept aside. Rerunning the same command resumes from the last checkpoint in --out.",
    )
    train.add_argument("--dataset", type=Path, required=True, help="LeRobot v3 dataset directory")
    train.add_argument("--out", type=Path, required=True, help="output directory")
    train.add_argument("--variant", default="joint", help="joint (default) | exec-only | separate")
    train.add_argument("--exec-horizon", type=int, default=20, help="He (default 20)")
    train.add_argument("--plan-horizon", type=int, default=160, help="Hp (default 160)")
    train.add_argument("--plan-steps", type=int, default=20, help="K (default 20)")
    train.add_argument("--action-layout", default=None,
                       help="which action dims are grippers: metaworld | libero (default: from the action names)")
    train.add_argument("--steps", type=int, default=1500, help="optimisation steps (default 1500)")
    train.add_argument("--batch-size", type=int, default=256, help="chunks per step (default 256)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    train.add_argument("--precision", default="fp32", help="fp32 (default) | bf16 autocast")
    train.add_argument("--codebook-size", type=int, default=4096, help="codes per level (default 4096, B.4)")
    train.add_argument("--quantizer", default="gradient",
                       help="gradient: codebook + 0.25 x commitment losses of Eq. 17-19 (default) | ema: EMA codebooks")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_run_tokenizer_train)

    evaluate = tok_sub.add_parser("eval", help="reconstruction, codebook usage and overlap on a dataset's held-out episodes")
    evaluate.add_argument("--tokenizer", type=Path, required=True, help="trained tokenizer directory")
    evaluate.add_argument("--dataset", type=Path, default=None, help="dataset (default: the one it was trained on)")
    evaluate.add_argument("--json", type=Path, default=None,
                          help="also write the metrics here (they always go to <tokenizer>/eval.json)")
    evaluate.set_defaults(func=_run_tokenizer_eval)


def _run_tokenizer_train(args: argparse.Namespace) -> int:
    from c2c.tokenizer.codec import CodecConfig
    from c2c.tokenizer.train import TokenizerTrainConfig, format_metrics, train_tokenizer

    config = TokenizerTrainConfig(
        dataset=str(args.dataset), out=str(args.out), variant=args.variant, exec_horizon=args.exec_horizon,
        plan_horizon=args.plan_horizon, plan_steps=args.plan_steps, action_layout=args.action_layout,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, precision=args.precision, seed=args.seed,
        codec={key: value for key, value in (("codebook_size", args.codebook_size), ("quantizer", args.quantizer))
               if value != CodecConfig.__dataclass_fields__[key].default},
    )
    metrics = train_tokenizer(config)
    print(format_metrics(metrics))
    print(f"saved to {args.out} (metrics.json, tensorboard/)")
    return 0


def _run_tokenizer_eval(args: argparse.Namespace) -> int:
    from c2c.tokenizer.evaluate import evaluate_saved_tokenizer
    from c2c.tokenizer.train import format_metrics

    metrics = evaluate_saved_tokenizer(args.tokenizer, args.dataset, args.json)
    print(format_metrics(metrics))
    return 0
