"""finetune-flow export: write a registered model (default: the champion) as ONNX for serving.

    python flows/export.py [--out DIR] [--quantize int8|none] [--model models:/NAME@champion | --name N --alias A | --version V]

DIR (default exports/NAME-vVERSION) gets model.onnx (fp32), model.int8.onnx (with --quantize int8, the default:
onnxruntime's dynamic int8 quantization), the tokenizer, config.json (task, label names, output rule) and
export.json. Inputs: input_ids, attention_mask (and token_type_ids where the model has them), int64, any batch
size and length; output: logits. `python flows/predict.py IN OUT --runtime onnx` runs the same export.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))
    from tasks.runtime import env as _env

    _env.apply()

import argparse
from pathlib import Path

from schemas.config import PROJECT_ROOT, check_model_name
from schemas.errors import ConfigError, FinetuneError, environment_fault
from schemas.secrets import mask_text
from tasks.runtime.logs import quiet_user_errors


def resolve_version(tracking_uri: str, model_uri: str) -> str:
    """NAME-vVERSION of a models:/ URI (the default folder name); the URI's last part for other URIs."""
    from tasks.runtime.tracking import tracking_client

    if not model_uri.startswith("models:/"):
        return model_uri.rstrip("/").rsplit("/", 1)[-1]
    ref = model_uri[len("models:/") :]
    client = tracking_client(tracking_uri)
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return f"{name}-v{client.get_model_version_by_alias(name, alias).version}"
    name, version = ref.rsplit("/", 1)
    return f"{name}-v{version}"


def export(model_uri: str, tracking_uri: str, out: str | None, quantize: str, trust_remote_code: bool = False) -> Path:
    from flows.predict import load_model
    from tasks.serving.onnx_export import export_onnx

    if model_uri.startswith("models:/") and "@" not in model_uri and "/" not in model_uri[len("models:/") :]:
        raise ConfigError(f"--model {model_uri} names no version or alias: use models:/NAME/VERSION or models:/NAME@ALIAS")
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file: name a folder")
    model, tokenizer = load_model.fn(model_uri, tracking_uri, trust_remote_code)  # predict's loader: same checks and errors
    folder = Path(out) if out else PROJECT_ROOT / "exports" / resolve_version(tracking_uri, model_uri)
    return export_onnx(model, tokenizer, folder, quantize)


def main(argv: list[str] | None = None) -> int:
    from flows.cli import add_model_arguments, add_tracking_argument, tracking_uri
    from schemas.predict import model_uri

    parser = argparse.ArgumentParser(
        prog="python flows/export.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--out", help="folder to write (default: exports/NAME-vVERSION in the project)")
    parser.add_argument(
        "--quantize", choices=["int8", "none"], default="int8", help="int8 (default): also write model.int8.onnx; none: fp32 only"
    )
    add_model_arguments(parser, "export")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model whose files carry their own Python code (auto_map) to run it"
    )
    add_tracking_argument(parser)
    args = parser.parse_args(argv)
    quiet_user_errors()
    uri = model_uri(args.model, args.name, args.alias, args.version)
    try:
        if not args.model:
            check_model_name(args.name)
        path = export(uri, tracking_uri(args.tracking_uri), args.out, args.quantize, args.trust_remote_code)
    except FinetuneError as err:
        print(f"error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        if environment_fault(err) is None:
            print(f"error: cannot write the export: {mask_text(str(err))}", file=sys.stderr)
            return 2
        print(f"error: {mask_text(environment_fault(err))}: a disk is full or read-only; choose another --out", file=sys.stderr)
        return 1
    quantize = "" if args.quantize == "int8" else " --quantize none"
    print(
        f"model   {mask_text(uri)}\nonnx    {path}\n"
        f"predict python flows/predict.py IN OUT --model {mask_text(uri)} --runtime onnx{quantize}   (exports it again into .cache/onnx)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
