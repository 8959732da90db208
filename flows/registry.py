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

from flows.cli import add_tracking_argument, tracking_uri
from schemas.config import RegistryConfig, check_alias, check_model_name
from schemas.errors import FinetuneError


def list_versions(tracking_uri: str, name: str, alias: str) -> list[str]:
    """One line per version: number, alias, task, gate and its task type's headline validation metrics."""
    from task_types import TASK_TYPES
    from tasks.registry.aliases import current_version
    from tasks.runtime.tracking import tracking_client

    client = tracking_client(tracking_uri)
    champion = current_version(client, name, alias)
    lines = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        mark = f"@{alias}" if champion is not None and str(champion.version) == str(v.version) else ""
        task_type = TASK_TYPES.get(v.tags.get("task", ""))
        metrics = "  ".join(f"val_{m} {v.tags.get(f'val_{m}', '?'):<9}" for m in (task_type.headline[:2] if task_type else ()))
        lines.append(
            f"v{v.version:<4} {mark:<10} {v.tags.get('task', '?'):<14} gate {v.tags.get('gate_passed', '?'):<5}  {metrics}  run {v.run_id}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    registry = RegistryConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    common.add_argument("--alias", default=registry.alias, help=f"alias to move (default: {registry.alias})")
    add_tracking_argument(common)
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

    from mlflow.exceptions import MlflowException

    from schemas.secrets import mask_text
    from tasks.registry import aliases as moves

    who = getattr(args, "who", None) or moves.whoami()
    try:
        check_model_name(args.name)
        check_alias(args.alias)
        uri = tracking_uri(args.tracking_uri)
        if args.command == "list":
            print("\n".join(list_versions(uri, args.name, args.alias)) or f"no versions of '{args.name}'")
        elif args.command == "promote":
            before = moves.promote(uri, args.name, args.alias, args.version, who, args.why)
            print(f"@{args.alias}: v{before or '-'} -> v{args.version} (by {who}: {args.why})")
        else:
            left, target = moves.rollback(uri, args.name, args.alias, who, args.why)
            print(f"@{args.alias}: v{left} -> v{target} (rolled back by {who}: {args.why})")
    except FinetuneError as err:
        print(f"error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    except MlflowException as err:  # the store answered with an error: its first line, any secret in it masked
        print(f"error: the tracking store refused: {mask_text(str(err).splitlines()[0])}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
