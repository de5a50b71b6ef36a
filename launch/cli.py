"""The `amst` command: the library's commands (amst_core.cli) plus the service's: `serve`, `up`, and the service
operations `db` and `gc`; and the library's study commands' `--api` (launch.remote, through amst_client)."""

from __future__ import annotations

import argparse
import sys

from amst_core import cli
from amst_core.config import load_config


def gpu_list(text: str) -> list[int]:
    """`--gpus 0,1,2,3`: GPU numbers, as `--gpu` counts them."""
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give GPU numbers separated by commas, e.g. 0,1,2,3") from None
    if not gpus or min(gpus) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give GPU numbers (0 or more) separated by commas")
    return gpus


def cmd_serve(args: argparse.Namespace) -> int:
    from launch import processes

    if args.role in ("api", "worker"):  # started beside `amst db upgrade`, in any order: wait for its schema
        from amst_core.settings import Settings
        from amst_core.store import migrate

        settings = Settings()  # this command's environment, read now
        migrate.wait_for_schema(settings.db_url, settings.schema_wait_s)
    if args.role == "api":
        processes.serve_api(args.host, args.port or 8000, args.workers)
    elif args.role == "worker":
        processes.serve_worker(args.gpu, args.queue, args.gpus)
    else:
        processes.serve_ui(args.host, args.port or 8501)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from launch import up

    demo = None
    if args.demo:
        overrides = [f"epochs={args.demo_epochs}"] if args.demo_epochs else []
        config = load_config(args.demo, overrides).model_dump(mode="json")
        config["tags"] = sorted({*config["tags"], "demo"})
        baseline = None if args.demo_baseline == "none" else args.demo_baseline
        demo = [load_config(base=c).model_dump(mode="json") for c in up.demo_pair(config, baseline)]
    return up.up(args.port, ui=not args.no_ui, ui_port=args.ui_port, demo=demo)


def cmd_db(args: argparse.Namespace) -> int:
    from amst_core.settings import Settings
    from amst_core.store import migrate

    settings = Settings()  # this command's environment, read now
    migrate.wait_for_database(settings.db_url, settings.schema_wait_s)  # a stack starts it beside the database
    migrate.upgrade(settings.db_url)
    print(f"database at revision {migrate.current(settings.db_url)}", file=sys.stderr)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Apply the artifacts retention policy (amst_core.artifacts) now."""
    from amst_core import artifacts
    from amst_core.settings import Settings
    from amst_core.store.db import session_scope

    overrides = {"checkpoint_retention_days": args.days} if args.days is not None else {}
    settings = Settings(**overrides)
    with session_scope(settings.db_url) as s:
        report = artifacts.collect(s, settings, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path, size in report.removed:
        print(f"{verb} {path} ({size / 1e6:.1f} MB)")
    print(f"{verb} {len(report.removed)} files or folders, {report.freed_bytes / 1e6:.1f} MB, under "
          f"{settings.artifacts_dir}", file=sys.stderr)
    return 0


def submit_study(args: argparse.Namespace, body: dict) -> int:
    from launch import remote

    return remote.submit_study(args, body)


def submit_rerun(args: argparse.Namespace, body: dict) -> int:
    from launch import remote

    return remote.submit_rerun(args, body)


def service_commands(sub: argparse._SubParsersAction) -> None:
    for study in ("sweep", "reproduce"):  # their --api: the library talks no HTTP
        sub.choices[study].set_defaults(submit_to_api=submit_study)
    sub.choices["rerun"].set_defaults(submit_to_api=submit_rerun)

    p = sub.add_parser("serve", help="run one service process (api, worker or the ui dashboard)")
    p.add_argument("role", choices=["api", "worker", "ui"])
    p.add_argument("--port", type=int, help="api: port (default 8000); ui: port (default 8501)")
    p.add_argument("--workers", type=int, default=1, help="api: processes serving the port (default 1; each "
                   "uses at most one core)")
    p.add_argument("--host", default="127.0.0.1", help="api, ui: interface to listen on")
    gpus = p.add_mutually_exclusive_group()  # refused at once, before `serve` waits for the database's schema
    gpus.add_argument("--gpu", type=int, help="worker: pin this process to GPU N (one worker process per GPU)")
    gpus.add_argument("--gpus", type=gpu_list, metavar="0,1,...", help="worker: serve runs on up to these GPUs (runs "
                   "asking for resources.gpus > 1 train on as many of them; default queues gpu-xN..gpu-x2,gpu)")
    p.add_argument("--queue", help="worker: comma-separated queues (default gpu,cpu; with --gpu: gpu)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("up", help="start the API, a worker and the dashboard on this machine (embedded default)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ui-port", type=int, default=8501)
    p.add_argument("--no-ui", action="store_true", help="do not start the dashboard")
    p.add_argument("--demo", metavar="CONFIG", help="submit this run config once the API answers, and the same "
                   "with the --demo-baseline method; print their status changes, then both results side by side "
                   "and the dashboard's Compare link")
    p.add_argument("--demo-epochs", type=int, help="override the demo runs' epochs")
    p.add_argument("--demo-baseline", default="naive", metavar="METHOD",
                   help="the method the demo run is compared with (default naive; 'none' for the run alone)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"], help="upgrade: migrate the run store to the current schema")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("gc", help="remove ended runs' checkpoints past their retention, and leftovers")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--days", type=float, help="retention in days (default AMST_CHECKPOINT_RETENTION_DAYS, 30)")
    p.set_defaults(func=cmd_gc)

    from launch import slurm  # stdlib only at import: the CLI stays quick to start

    slurm.add_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser(service_commands)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, service_commands)


if __name__ == "__main__":
    sys.exit(main())
