"""The `vidm` command line: generate, extend, data, train."""
from __future__ import annotations

import argparse
import sys

from .errors import VidmError


def cmd_train(args) -> None:
    from .train import load_train_config, train

    cfg = load_train_config(args.config)
    if cfg.stage != args.stage:
        raise VidmError(f"{args.config} is a '{cfg.stage}' config, not '{args.stage}'")
    folder = train(cfg, resume=args.resume)
    print(f"trained {args.stage}: {folder}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidm", description="Video implicit diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one stage (vae, content or motion) from a JSON config")
    p.add_argument("stage", choices=["vae", "content", "motion"])
    p.add_argument("--config", required=True, help="training config (JSON), e.g. configs/moving-mnist-64/vae.json")
    p.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VidmError as e:
        print(f"vidm: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("vidm: interrupted", file=sys.stderr)
        sys.exit(130)
