"""`grid`: thin commands over plain functions. User mistakes end with a message and exit 2."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from grid.errors import GridError


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="grid spec (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, param or axis with a YAML value, e.g. --set batch_size=[32,64]")


def _load(args):
    from grid.expand import expand
    from grid.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    return spec, expand(spec)


def cmd_plan(args, console: Console) -> int:
    from grid.run import plan_lines

    spec, expansion = _load(args)
    for line in plan_lines(spec, expansion):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_run(args, console: Console) -> int:
    from grid.run import RunOptions, run_sweep

    spec, expansion = _load(args)
    opts = RunOptions(results=args.results, runner=args.runner, address=args.address, num_gpus=args.num_gpus,
                      cpu_slots=args.cpu_slots, retry_failed=args.retry_failed,
                      live=False if args.plain else None)
    outcome = run_sweep(spec, opts, console, expansion)
    if args.strict and any(r["status"] != "ok" for r in outcome.rows):
        return 1
    return 0


def cmd_status(args, console: Console) -> int:
    from grid.results import ResultStore, latest_attempts
    from grid.summary import status_report

    store = ResultStore(args.results)
    table = store.read(args.sweep)
    if table.num_rows == 0:
        console.print(f"no results in {args.results}" + (f" for sweep {args.sweep!r}" if args.sweep else ""))
        return 0
    status_report(latest_attempts(table).to_pylist(), table.to_pylist(), console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grid", description="Run experiment grids on pinned per-GPU Ray workers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="list a spec's trials and their count; nothing runs")
    _spec_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run a spec's trials (skipping those already done) into a results dataset")
    _spec_args(p)
    p.add_argument("--results", default="results", help="results location: a directory or URI (default: results)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (auto, HOST:PORT, ray://...); default: start a local Ray on 127.0.0.1")
    p.add_argument("--runner", choices=("ray", "local"), default="ray",
                   help="ray (default): pinned actors; local: threads of this process, no Ray (debugging)")
    p.add_argument("--num-gpus", type=int, default=None,
                   help="GPUs a local Ray (or the local runner) offers; fakes GPUs on a CPU box (default: detected)")
    p.add_argument("--cpu-slots", type=int, default=1, help="trials at once per node when there are no GPUs (default 1)")
    p.add_argument("--retry-failed", action="store_true", help="also rerun trials whose latest attempt is error/timeout/killed")
    p.add_argument("--plain", action="store_true", help="one line per finished trial instead of the live display")
    p.add_argument("--strict", action="store_true", help="exit 1 if any trial did not end ok")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="per sweep: trials by status, failures with their log paths")
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("--sweep", default=None)
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    err = Console(stderr=True)
    try:
        return args.func(args, console)
    except GridError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished trials are in the results; run again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
