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
