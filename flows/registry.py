"""finetune-flow registry: list versions, promote one by hand, or roll the alias back.

    python -m flows.registry list     [--name NAME]
    python -m flows.registry promote  --version N --why "reason" [--name NAME] [--alias champion]
    python -m flows.registry rollback --why "reason" [--name NAME] [--alias champion]

Each move is recorded as tags on the version it lands on (<alias>_promoted_by / _why / _at,
and the version it replaced); a rollback also tags the version it leaves (<alias>_rolled_back_*).
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from tasks.runtime import env as _env

    _env.apply()

import argparse

from schemas.config import RegistryConfig, TrackingConfig, check_alias, check_model_name
from schemas.errors import FinetuneError


def list_versions(tracking_uri: str, name: str, alias: str) -> list[str]:
    """One line per version: number, alias, gate and validation metrics."""
    from mlflow import MlflowClient

    from tasks.registry.aliases import current_version

    client = MlflowClient(tracking_uri, tracking_uri)
    champion = current_version(client, name, alias)
    lines = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        mark = f"@{alias}" if champion is not None and str(champion.version) == str(v.version) else ""
        lines.append(
            f"v{v.version:<4} {mark:<10} gate {v.tags.get('gate_passed', '?'):<5}  val_acc {v.tags.get('val_accuracy', '?'):<9}  "
            f"val_f1_macro {v.tags.get('val_f1_macro', v.tags.get('val_f1', '?')):<9}  run {v.run_id}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    registry, tracking = RegistryConfig(), TrackingConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    common.add_argument("--alias", default=registry.alias, help=f"alias to move (default: {registry.alias})")
    common.add_argument("--tracking-uri", default=tracking.resolved_uri(), help="MLflow store (default: the project's mlruns/mlflow.db)")
    parser = argparse.ArgumentParser(
        prog="python -m flows.registry",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="list versions with their gate, metrics and the alias")
    promote = commands.add_parser("promote", parents=[common], help="point the alias at a version")
    promote.add_argument("--version", type=int, required=True, help="version to promote")
    rollback = commands.add_parser("rollback", parents=[common], help="point the alias back at the version it replaced")
    for sub in (promote, rollback):
        sub.add_argument("--why", required=True, help="reason, recorded as a tag")
        sub.add_argument("--who", help="who is doing this (default: user@host)")
    args = parser.parse_args(argv)

    from tasks.registry import aliases as moves

    who = getattr(args, "who", None) or moves.whoami()
    try:
        check_model_name(args.name)
        check_alias(args.alias)
        if args.command == "list":
            print("\n".join(list_versions(args.tracking_uri, args.name, args.alias)) or f"no versions of '{args.name}'")
        elif args.command == "promote":
            before = moves.promote(args.tracking_uri, args.name, args.alias, args.version, who, args.why)
            print(f"@{args.alias}: v{before or '-'} -> v{args.version} (by {who}: {args.why})")
        else:
            left, target = moves.rollback(args.tracking_uri, args.name, args.alias, who, args.why)
            print(f"@{args.alias}: v{left} -> v{target} (rolled back by {who}: {args.why})")
    except FinetuneError as err:
        from schemas.secrets import mask_text

        print(f"error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
