"""`python -m runner.workload`: the command a container runs (argparse, stdlib only).

    run    --config run.json --data DIR --out DIR [--weights FILE] [--images DIR]   train and measure one run
    info   --framework F                            framework build, devices, threads, pip freeze
    models --framework F --json [...]               per model: params and FLOPs from the real model

Exit codes: 0 ok; 2 bad input (one line on stderr, nothing run); 3 the run failed (its reason is
in events.jsonl and result.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.errors import RunnerError, UsageError

EXIT_BAD_INPUT = 2
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")
MODEL_CHOICES = ("resnet50", "alexnet", "vgg16", "simple_cnn")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner.workload", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and measure one run")
    run.add_argument("--config", type=Path, required=True, help="run.json written by the host")
    run.add_argument("--data", type=Path, required=True, help="prepared dataset folder (read-only)")
    run.add_argument("--out", type=Path, required=True, help="empty folder for events.jsonl, result.json")
    run.add_argument("--weights", type=Path, default=None,
                     help="the pretrained .npz run.json pins by sha256 (read-only)")
    run.add_argument("--images", type=Path, default=None,
                     help="data.decode: jpeg: the ImageNet JPEG folder (read-only); --data holds its index")

    info = sub.add_parser("info", help="framework build, devices, threads and packages as JSON")
    info.add_argument("--framework", choices=FRAMEWORKS, required=True)

    models = sub.add_parser("models", help="parameters and FLOPs per model, from the real framework model")
    models.add_argument("--framework", choices=FRAMEWORKS, required=True)
    models.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    models.add_argument("--model", choices=MODEL_CHOICES, action="append",
                        help="only this model (repeatable; default: all)")
    models.add_argument("--classes", type=int, default=10)
    models.add_argument("--input-size", type=int, default=None, help="default: each model's own")
    models.add_argument("--stem", choices=("imagenet", "cifar"), default=None, help="resnet50 stem")
    models.add_argument("--layout", choices=("imagenet", "cifar"), default=None, help="alexnet layout")
    return p


def _import_framework(framework: str) -> None:
    """Fail with a one-line environment error when the framework is not installed."""
    module = {"pytorch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}[framework]
    try:
        __import__(module)
    except ImportError as exc:
        raise UsageError(f"{framework} is not installed in this environment ({exc})",
                         field="--framework", fix="run inside the image built for this framework") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from runner.workload.harness.run import run

    return run(args.config, args.data, args.out, args.weights, args.images)


def _cmd_info(args: argparse.Namespace) -> int:
    from runner.workload.env_info import environment_report

    _import_framework(args.framework)
    print(json.dumps(environment_report(args.framework), indent=1, sort_keys=True))
    return 0


def _model_config(name: str, args: argparse.Namespace) -> Any:
    """The ModelConfig the flags describe; per-model defaults where a flag is not given:
    input 32, ResNet-50's unchanged ImageNet stem, AlexNet's layout matching the input size."""
    from runner.workload.models import ModelConfig

    size = args.input_size if args.input_size is not None else 32
    return ModelConfig(
        name=name, num_classes=args.classes, input_size=size,
        stem=(args.stem or "imagenet") if name == "resnet50" else None,
        layout=(args.layout or ("imagenet" if size == 224 else "cifar")) if name == "alexnet" else None,
    )


def _cmd_models(args: argparse.Namespace) -> int:
    from runner.workload.models.describe import describe

    _import_framework(args.framework)
    rows = [describe(_model_config(name, args), args.framework) for name in args.model or MODEL_CHOICES]
    print(json.dumps(rows, indent=1))
    return 0


COMMANDS = {"run": _cmd_run, "info": _cmd_info, "models": _cmd_models}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RunnerError as exc:
        print(exc.describe(), file=sys.stderr)
        return EXIT_BAD_INPUT
