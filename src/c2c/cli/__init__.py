"""The ``c2c`` command line.

Every subcommand fails with a one-line ``c2c: error: ...`` instead of a traceback: a :class:`C2CError` names the bad
input, an OSError the path, anything else its type and message; ``C2C_DEBUG=1`` shows the traceback instead. A
command's ``--out`` is checked (a directory that can be written) before any work, and removed again when the command
fails before writing anything into it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from c2c.cli_data import add_data_commands, comma_list as _comma_list
from c2c.errors import C2CError


API_KEY_ENV = "C2C_SERVE_API_KEY"  # where `c2c serve` and `c2c eval --server` read the key when not given


def api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else $C2C_SERVE_API_KEY, else None (no key)."""
    return args.api_key if args.api_key is not None else (os.environ.get(API_KEY_ENV) or None)


def _add_tokenizer_commands(subparsers: argparse._SubParsersAction) -> None:
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


def _add_policy_commands(subparsers: argparse._SubParsersAction) -> None:
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
                       help="trained action tokenizer directory (RVQ variants; binning: a binning tokenizer, or none "
                       "to fit one on the dataset; regress takes none)")
    train.add_argument("--out", type=Path, required=True, help="output directory (a policy checkpoint)")
    train.add_argument("--variant", default="plan",
                       help="plan (default) | plan-hp40 | noplan | separate | regress (continuous chunk head, L1; no "
                       "tokenizer) | binning (exec tokens, 256 bins per action dimension)")
    train.add_argument("--preset", default="tiny", help="backbone preset: tiny (default) | nano | debug | paligemma-3b | tiny-multistream | "
                       "paligemma-3b-multistream (App. C.3: VLM, proprio and action streams)")
    train.add_argument("--backbone-path", default=None, help="local PaliGemma directory (paligemma-3b)")
    train.add_argument("--cameras", type=_comma_list, default=None,
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
    train.add_argument("--device", default="cpu",
                       help="cpu (default) | cuda | cuda:N: where the weights and batches live")
    train.add_argument("--num-processes", type=int, default=1,
                       help="data-parallel processes on this node (default 1; with --device cuda one per GPU)")
    train.add_argument("--resume", action="store_true", help="require a checkpoint in --out to continue from")
    train.add_argument("--init-from", type=Path, default=None,
                       help="start from this trained policy's weights (fine-tuning, e.g. on a dataset extended by "
                       "c2c data metaworld-takeover); same backbone, variant, cameras and tokenizer")

    def run_train(args: argparse.Namespace) -> int:
        from c2c.policy.train import PolicyTrainConfig, format_metrics, launch_processes, train_policy

        config = PolicyTrainConfig(
            dataset=str(args.dataset), tokenizer=None if args.tokenizer is None else str(args.tokenizer),
            out=str(args.out), variant=args.variant,
            preset=args.preset, backbone_path=args.backbone_path, cameras=args.cameras, steps=args.steps,
            batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay, ema_decay=args.ema_decay, precision=args.precision, seed=args.seed,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, decode_frames=args.decode_frames,
            max_image_gb=args.max_image_gb, resize_images=args.resize_images, image_shift=args.image_shift,
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


def _add_eval_metaworld(eval_sub: argparse._SubParsersAction) -> None:
    mw = eval_sub.add_parser(
        "metaworld",
        help="roll a trained policy out in Meta-World: success rates, report, chart, videos",
        description="Closed-loop evaluation of a saved policy directory on Meta-World tasks. Placements come from "
        "--seed in a namespace of their own and are checked against the training demonstrations' seeds "
        "(training_data.json in the policy directory); an overlap is refused. Writes results.json, report.md, "
        "success.png and videos/<task>_ep<k>.mp4 into --out.",
    )
    mw.add_argument("--policy", type=Path, default=None,
                    help="saved policy directory (c2c policy train --out); required unless --server is given")
    mw.add_argument("--server", default=None,
                    help="ws://HOST:PORT of a `c2c serve` server to act through instead of loading the policy; the "
                    "training record comes from --policy when given, else from the server")
    mw.add_argument("--api-key", default=None, help=f"API key of --server (default: ${API_KEY_ENV} when set)")
    mw.add_argument("--tasks", required=True, help="comma list of task names (e.g. reach-v3,pick-place-v3) or a "
                    "group: mt10, mt50, easy, medium, hard, very_hard")
    mw.add_argument("--episodes", type=int, required=True, help="episodes per task")
    mw.add_argument("--seed", type=int, default=None,
                    help="seed of the evaluation placements (required, unless --training-placements)")
    mw.add_argument("--replan-every", type=int, default=None,
                    help="actions executed per decoded chunk (default: the policy's replan_every)")
    mw.add_argument("--max-steps", type=int, default=500, help="episode step limit (default 500)")
    mw.add_argument("--videos", type=int, default=0, help="episodes recorded as video per task (default 0)")
    mw.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: min(CPUs, episodes, 2); 1 runs in this process)")
    mw.add_argument("--envs-per-worker", type=int, default=1,
                    help="environments each process steps together, decoding their observations as one batch "
                    "(default 1)")
    mw.add_argument("--out", type=Path, required=True, help="output directory")
    mw.add_argument("--training-placements", action="store_true",
                    help="diagnostic: start episode k of each task from its k-th training demonstration's placement "
                         "(fit vs generalisation; flagged as such in the report, never a result)")
    mw.add_argument("--allow-unknown-training-seeds", action="store_true",
                    help="debugging only: evaluate a policy whose training_data.json is missing (overlap unchecked)")
    mw.set_defaults(func=_run_eval_metaworld)


def _run_eval_metaworld(args: argparse.Namespace) -> int:
    from c2c.eval.metaworld_eval import evaluate_metaworld, format_summary

    if args.policy is None and args.server is None:
        from c2c.errors import ConfigError

        raise ConfigError("eval metaworld: give --policy DIR, or --server ws://HOST:PORT of a `c2c serve` server")
    if args.seed is None and not args.training_placements:
        from c2c.errors import ConfigError

        raise ConfigError("eval metaworld: --seed is required (the seed of the evaluation placements)")
    results = evaluate_metaworld(
        args.policy, args.tasks, args.episodes, 0 if args.seed is None else args.seed, args.out, replan_every=args.replan_every,
        max_steps=args.max_steps, videos=args.videos, workers=args.workers,
        allow_unknown_training_seeds=args.allow_unknown_training_seeds, server=args.server, api_key=api_key(args),
        training_placements=args.training_placements, envs_per_worker=args.envs_per_worker,
    )
    print(format_summary(results))
    print(f"saved to {args.out} (results.json, report.md, success.png{', videos/' if args.videos else ''})")
    return 0


def _add_eval_libero(eval_sub: argparse._SubParsersAction) -> None:
    from c2c.eval.libero_eval import add_libero_eval_parser

    add_libero_eval_parser(eval_sub)


# `c2c eval <simulator>`: one entry per simulator, each adding its own subparser.
EVAL_COMMANDS = {"metaworld": _add_eval_metaworld, "libero": _add_eval_libero}


def _add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="closed-loop evaluation of trained policies in simulators")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    for add_command in EVAL_COMMANDS.values():
        add_command(eval_sub)


def _add_run_command(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="the whole pipeline (demos -> tokenizer -> policies -> evaluation)")
    run.add_argument("--preset", default="quick",
                     help="quick | mt10 | mt50 | libero-spatial | libero-object | libero-goal | libero-10 | libero "
                     "(the four LIBERO suites; default quick)")
    run.add_argument("--out", type=Path, default=None, help="output directory (default runs/<preset>)")
    run.add_argument("--force", action="store_true", help="redo stages that are already done")
    run.add_argument("--workers", type=int, default=None,
                     help="evaluation worker processes (default: min(CPUs, episodes, 2))")
    run.add_argument("--backbone", default=None, help="override the preset's policy backbone (tiny | nano | ...)")
    run.add_argument("--tokenizer-steps", type=int, default=None, help="override the preset's tokenizer steps")
    run.add_argument("--policy-steps", type=int, default=None, help="override the preset's policy steps per variant")
    run.add_argument("--eval-episodes", type=int, default=None,
                     help="override the preset's evaluation episodes per task (LIBERO: trials per task)")
    run.add_argument("--episodes-per-task", type=int, default=None,
                     help="override the preset's demonstrations per task")
    run.add_argument("--action-noise", type=float, default=None,
                     help="Meta-World: noise injected into the demonstrations' executed actions (DART, see c2c data "
                     "metaworld --help); default: the preset's")
    run.add_argument("--takeover-episodes", type=int, default=None,
                     help="Meta-World: after training, the scripted expert takes over from this many rollouts per "
                     "task of each variant (c2c data metaworld-takeover); each variant is trained again, with the "
                     "same budget, on the demonstrations plus its takeovers and that policy is evaluated (default: "
                     "the preset's; 0: off)")
    run.add_argument("--takeover-finetune", type=int, default=None, metavar="STEPS",
                     help="with --takeover-episodes: instead of training each variant again from scratch, fine-tune "
                     "its first policy for STEPS steps on the demonstrations plus its takeovers (c2c policy train "
                     "--init-from; default: the preset's; 0: from scratch)")
    run.add_argument("--variants", default=None,
                     help="train and evaluate only these policy variants, comma-separated (plan | plan-hp40 | "
                     "noplan | separate | regress | binning; default: the preset's). Finished variants are reused by a "
                     "later full run")
    run.add_argument("--cameras", type=_comma_list, default=None,
                     help="Meta-World: cameras recorded and seen by the policies, primary first (default: the "
                     "preset's; quick: corner2, the others: corner2,gripperPOV)")
    run.add_argument("--threads", type=_threads_option, default=None,
                     help="torch threads of the training stages: N pins them (N // k each for k policies side by "
                     "side; a finished one's cores then evaluate it while the others train), so a rerun repeats the "
                     "weights bit for bit; auto uses the cores other jobs leave free and hands a finished training's "
                     "cores to the others (faster on a shared machine, but the weights then depend on its load). "
                     "Default: the preset's (quick: 2; the others: auto)")
    run.add_argument("--device", default="cpu",
                     help="where the policies train: cpu (default) | cuda | cuda:N (the variants side by side on it); "
                     "the other stages run on the CPU")
    run.set_defaults(func=_run_pipeline)


def _threads_option(text: str) -> int:
    """``--threads``: a positive count, or ``auto`` (0)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive thread count or 'auto', got {text!r}")
    return value


def _run_pipeline(args: argparse.Namespace) -> int:
    from c2c.eval.pipeline import run_presets
    from c2c.policy.train import check_device

    check_device(args.device)  # before hours of demonstrations, not after
    overrides = {"backbone": args.backbone, "tokenizer_steps": args.tokenizer_steps,
                 "policy_steps": args.policy_steps, "eval_episodes": args.eval_episodes,
                 "episodes_per_task": args.episodes_per_task, "action_noise": args.action_noise,
                 "takeover_episodes": args.takeover_episodes, "takeover_finetune_steps": args.takeover_finetune,
                 "variants": tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None,
                 "cameras": tuple(args.cameras) if args.cameras is not None else None, "threads": args.threads}
    return run_presets(args.preset, args.out, overrides, force=args.force, workers=args.workers, device=args.device)


def _add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve a policy to robots over openpi's websocket protocol",
        description="Load a saved policy once and answer openpi-client observations (msgpack over websockets) "
        "with action chunks; concurrent requests are decoded as one batch. GET /healthz answers 200. Bad requests "
        "fail only their own connection (a text frame naming the problem, then close). Ctrl-C stops.",
    )
    serve.add_argument("--policy", type=Path, required=True, help="saved policy directory (c2c policy train --out)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                       "only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--api-key", default=None,
                       help="require this key (header 'Authorization: Api-Key KEY' or 'Api-Key: KEY'); default: "
                       f"${API_KEY_ENV} when set (keeps the key out of the process list), else none")
    serve.add_argument("--key-map", default=None,
                       help="request keys -> ours: libero | metaworld | auto | a JSON file (default auto: "
                       "observation/image -> the first camera, observation/wrist_image -> the second)")
    serve.add_argument("--resize", action="store_true", default=None,
                       help="resize images of another size to the policy's, PIL bilinear as training resizes (the "
                       "default with --key-map libero, whose openpi client sends 224x224 images; with the other key "
                       "maps the default is to refuse them, naming the size)")
    serve.add_argument("--strict-size", action="store_true",
                       help="refuse images of another size than the policy's, naming the key and both sizes (also "
                       "with --key-map libero)")
    serve.add_argument("--max-message-bytes", type=int, default=16 * 2**20,
                       help="largest request accepted (default 16 MiB); larger ones are closed with code 1009")
    serve.add_argument("--max-batch", type=int, default=8, help="requests decoded together at most (default 8)")
    serve.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: the CPUs not busy with other work)")
    serve.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import logging

    from c2c.serve.server import run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    run_server(args.policy, host=args.host, port=args.port, api_key=api_key(args), key_map=args.key_map,
               resize=args.resize, strict_size=args.strict_size, max_message_bytes=args.max_message_bytes,
               max_batch=args.max_batch, threads=args.threads)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from c2c import __version__

    parser = argparse.ArgumentParser(prog="c2c", description="Coarse-to-Control: plan-then-execute VLA policies")
    parser.add_argument("--version", action="version", version=f"c2c {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_data_commands(subparsers)
    _add_tokenizer_commands(subparsers)
    _add_policy_commands(subparsers)
    _add_eval_commands(subparsers)
    _add_run_command(subparsers)
    _add_serve_command(subparsers)
    from c2c.analysis.commands import add_analysis_commands
    add_analysis_commands(subparsers)
    return parser


def _out_dir(args: argparse.Namespace) -> Path | None:
    """The output directory a command writes to: its --out, or the default of `c2c run` and `c2c ablate`."""
    out = getattr(args, "out", None)
    if out is None and args.command in ("run", "ablate"):
        out = Path("runs") / args.preset
    return out


def _output_guard(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The output directory checked before the command starts (writable, not a file) and removed again when the
    command fails before writing anything into it. Dataset writers stage their output beside it."""
    from c2c.utils.outdir import output_directory

    out = _out_dir(args)
    if out is None:
        return contextlib.nullcontext()
    overwrite = getattr(args, "overwrite", None)  # commands that replace an existing --out say so
    return output_directory(out, "--out", staging_beside=args.command == "data", overwrite=overwrite)


def _debugging() -> bool:
    return os.environ.get("C2C_DEBUG", "") not in ("", "0")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _os_error_line(error: OSError) -> str:
    """An OSError as one line naming the path and what to do."""
    from c2c.utils.outdir import write_failure_hint

    reason, fix = write_failure_hint(error, "path")
    if error.filename is None:
        return f"{type(error).__name__}: {_first_line(str(error))} ({fix}; set C2C_DEBUG=1 for the traceback)"
    paths = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    return f"{paths}: {reason}; {fix}"


def main(argv: list[str] | None = None) -> int:
    """Run one command. A :class:`C2CError` prints ``c2c: error: <message>`` (exit 2); an OSError one line naming the
    path (exit 1); any other exception one line with its type (exit 1); ``C2C_DEBUG=1`` re-raises them instead, for
    the traceback. Ctrl-C prints one line (exit 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _output_guard(args):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("c2c: interrupted (rerun the same command to resume where supported)", file=sys.stderr)
        return 130
    except C2CError as err:
        if _debugging():
            raise
        print(f"c2c: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if _debugging():
            raise
        print(f"c2c: error: {_os_error_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if _debugging():
            raise
        print(f"c2c: error: unexpected {type(err).__name__}: {_first_line(str(err))} (set C2C_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
