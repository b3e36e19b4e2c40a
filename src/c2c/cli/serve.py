"""``c2c serve``: serve a saved policy over openpi's websocket protocol."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from c2c.cli.options import API_KEY_ENV, api_key
from c2c.errors import ConfigError

log = logging.getLogger("c2c.serve")


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
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


def training_summary(policy_dir: str | Path) -> dict[str, Any]:
    """The Meta-World training record of ``policy_dir``, as the server's metadata sends it (so remote evaluations
    can check placement seeds): ``known`` False with the error when the record cannot be read."""
    from c2c.eval.training_record import read_training_record

    try:
        record = read_training_record(Path(policy_dir))
    except ConfigError as error:
        log.warning("training record not served: %s", error)
        return {"known": False, "path": str(Path(policy_dir) / "training_data.json"), "error": str(error)}
    seeds: dict[str, list[int]] = {}
    for seed, task in record.seeds.items():
        seeds.setdefault(task, []).append(seed)
    return {"known": record.known, "path": str(record.path), "tasks": list(record.tasks), "seeds": seeds,
            "image_size": record.image_size, "fast_drawing": record.fast_drawing}


def _run_serve(args: argparse.Namespace) -> int:
    from c2c.serve.server import run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    run_server(args.policy, host=args.host, port=args.port, api_key=api_key(args), key_map=args.key_map,
               resize=args.resize, strict_size=args.strict_size, max_message_bytes=args.max_message_bytes,
               max_batch=args.max_batch, threads=args.threads, training=training_summary(args.policy))
    return 0
