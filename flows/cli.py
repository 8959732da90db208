"""What the command-line tools share: the tracking store option, the registered-model options, one-line errors."""

from __future__ import annotations

import argparse


def add_tracking_argument(parser: argparse.ArgumentParser) -> None:
    """--tracking-uri, defaulting to MLFLOW_TRACKING_URI or the project's store (the default is resolved at run time)."""
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else the project's mlruns/mlflow.db); a user:password@ in it is "
        "moved into MLFLOW_TRACKING_USERNAME/PASSWORD and never printed",
    )


def tracking_uri(given: str | None) -> str:
    """The store to use, with any credentials in it moved out into MLflow's variables."""
    from schemas.config import TrackingConfig
    from schemas.secrets import externalize_credentials

    return TrackingConfig(uri=externalize_credentials(given) if given else None).resolved_uri()


def add_model_arguments(parser: argparse.ArgumentParser, use: str = "use") -> None:
    """--model / --name / --alias / --version: which registered model (predict, export and evaluate share them)."""
    from schemas.config import RegistryConfig

    registry = RegistryConfig()
    parser.add_argument(
        "--model", help="full model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...); overrides --name/--alias/--version"
    )
    parser.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    parser.add_argument("--alias", default=registry.alias, help=f"alias to {use} (default: {registry.alias})")
    parser.add_argument("--version", type=int, help="a registered version number instead of the alias")


def finetune_parser() -> argparse.ArgumentParser:
    """python flows/finetune.py's options; light (the config's schema only), so --help never waits for prefect or mlflow."""
    from schemas.config import describe_options

    options = "\n".join(f"  {key:<32} {desc} (default: {default})" for key, default, desc in describe_options())
    parser = argparse.ArgumentParser(
        prog="python flows/finetune.py",
        allow_abbrev=False,
        description="finetune-flow: fine-tune a pretrained encoder on labelled text and register it behind a gate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"options (set as key=value; later wins over --config):\n{options}\n\n"
        "examples:\n  python flows/finetune.py train.epochs=1 data.max_rows=2000\n"
        "  python flows/finetune.py data.path=reviews.csv data.text_column=review data.label_column=stars",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.learning_rate=5e-5")
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections (data, model, train, ...)")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the run summary as one JSON object to PATH")
    parser.add_argument("--refresh", action="store_true", help="recompute every step instead of re-using cached outputs")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="instead of running once, serve the flow on schedule.cron / schedule.timezone with this config (Ctrl-C stops); "
        "needs PREFECT_API_URL pointing at a running Prefect server (make prefect-server)",
    )
    return parser


def runs_once_with_a_valid_config(args: argparse.Namespace) -> bool:
    """True when the finetune command will run the flow once (not --serve) on a config that validates; main() reports
    any problem with it itself, as one line."""
    from schemas.config import load_config

    if args.serve:
        return False
    try:
        load_config(args.config, args.overrides)
    except Exception:
        return False
    return True
