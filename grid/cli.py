"""`grid`: thin commands over plain functions. User mistakes end with a message and exit 2."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from grid.spec.expand import Expansion
    from grid.spec.model import GridSpec

from grid.errors import GridError, ResultsError, UsageError
from grid.options import add_arguments, from_arguments
from grid.shared import TrialStatus
from grid.text import BROKEN_PIPE_EXIT, ensure_std_streams, make_console, plain, printable, quiet_stdout


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="grid spec (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key, param or axis with a YAML value, e.g. --set batch_size=[32,64]",
    )


def _load(args: argparse.Namespace) -> tuple[GridSpec, Expansion]:
    from grid.spec.expand import expand
    from grid.spec.parse import load_spec

    spec = load_spec(args.spec, args.overrides)
    return spec, expand(spec)


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from grid.sweep import plan_lines

    spec, expansion = _load(args)
    # one print: rich costs ~0.2 ms a call, 20 s for a 100,000-trial plan line by line
    console.print(
        printable("\n".join(plan_lines(spec, expansion)), lines=True), highlight=False, markup=False, soft_wrap=True
    )
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from grid.sweep import run_sweep

    spec, expansion = _load(args)
    opts = from_arguments(args, live=False if args.plain else None)
    outcome = run_sweep(spec, opts, console, expansion)
    if args.strict and any(r.status is not TrialStatus.OK for r in outcome.rows):
        return 1
    return 0


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from grid.reports.summary import status_report
    from grid.results.store import ResultStore

    store = ResultStore(args.results)
    table = store.read(args.sweep)
    if table.num_rows == 0:  # as `report` and `query`: a mistyped folder is not a sweep without trials
        where = f" for sweep {args.sweep!r}" if args.sweep else ""
        raise ResultsError(
            f"no results in {args.results}{where} (sweeps there: {', '.join(store.sweeps()) or 'none'}); "
            f"give the --results location of a `grid run`"
        )
    status_report(table, console)
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from grid.reports.build import ReportOptions, build_report
    from grid.reports.page import write_report
    from grid.reports.terminal import print_report
    from grid.results.store import ResultStore

    opts = ReportOptions(sweep=args.sweep, rows=_names(args.rows), cols=_names(args.cols), metric=args.metric)
    verdict = None
    if args.verdict:
        from grid.reports.verdicts import read_json, summary_line

        verdict = read_json(args.verdict)  # a file that is not one is said before any work
    reports = build_report(ResultStore(args.results), opts)
    page = None if args.no_html else write_report(reports, args.out, args.results, verdict)
    print_report(reports, console)
    if verdict:
        console.print(
            plain(f"verdict ({args.verdict}): {summary_line(verdict.result)}"), highlight=False, soft_wrap=True
        )
    if page:
        console.print(plain(f"report: {page}"), highlight=False, soft_wrap=True)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from grid.reports.compare import CompareOptions, acceptable, compare, confirm, print_comparison
    from grid.reports.history_plot import write_history_plots
    from grid.reports.verdicts import write_json
    from grid.results.history import accept, check_keep, history_runs

    keep = check_keep(args.history)
    if args.confirm < 0:
        raise UsageError(f"--confirm: received {args.confirm}, expected re-runs >= 0")
    if args.confirm and not args.spec:
        raise UsageError("--confirm re-runs the flagged configs from the spec of the current run: give it with --spec")
    if args.confirm:
        from grid.spec.parse import load_spec

        load_spec(args.spec, args.overrides)  # a spec that cannot run is said before anything is judged
        from_arguments(args, results=args.current, live=False).check()
    if args.accept and not history_runs(args.baseline, keep):
        from grid.reports.compare import pick_sweep
        from grid.results.store import ResultStore

        sweep = pick_sweep(ResultStore(args.current), args.current_sweep or args.sweep, "current")
        name = accept(args.baseline, args.current, sweep, keep)
        console.print(f"no history at {args.baseline} yet: this run starts it (run {name})", highlight=False)
        return 0
    opts = CompareOptions(
        metric=args.metric,
        threshold=args.threshold,
        goal=args.goal,
        ignore=tuple(_names(args.ignore) or ()),
        baseline_sweep=args.baseline_sweep or args.sweep,
        current_sweep=args.current_sweep or args.sweep,
        allow_missing=args.allow_missing,
        history=keep,
    )
    result = compare(args.baseline, args.current, opts)
    if args.confirm and result.flagged():
        from grid.rerun import rerun

        configs = [v.config for v in result.flagged()]
        run_opts = from_arguments(args, results=args.current, live=False)
        confirm(result, rerun(args.spec, args.overrides, configs, args.confirm, args.current, run_opts, console), opts)
    print_comparison(result, console)
    drawn = write_history_plots(result, args.out) if args.out else []
    for path in drawn:
        console.print(f"history plot: {path}", highlight=False, soft_wrap=True)
    if args.json:
        write_json(result, args.json, drawn)
        console.print(plain(f"verdict: {args.json}"), highlight=False, soft_wrap=True)
    if args.accept:
        refused = acceptable(result)
        if refused:
            console.print(plain(f"not added to the history: {refused}"), highlight=False, soft_wrap=True)
        else:
            name = accept(args.baseline, args.current, result.current["sweep"], keep)
            console.print(plain(f"added to the history {args.baseline} as run {name}"), highlight=False, soft_wrap=True)
    return result.exit_code


def cmd_query(args: argparse.Namespace, console: Console) -> int:
    from grid.results.query import print_table, run_query, write_csv
    from grid.results.store import ResultStore

    table = run_query(ResultStore(args.results), args.sql, args.sweep)
    if args.csv:
        write_csv(table, sys.stdout)
    else:
        print_table(table, console, args.all_columns)
    return 0


def cmd_compact(args: argparse.Namespace, console: Console) -> int:
    from grid.results.compact import compact
    from grid.results.store import ResultStore

    for done in compact(ResultStore(args.results), args.sweep):
        if done.merged_path is None:
            console.print(plain(f"sweep {done.sweep}: {done.files_before} file(s), nothing to merge"), highlight=False)
            continue
        console.print(
            plain(
                f"sweep {done.sweep}: {done.files_before} files -> 1 ({done.rows_written} rows, "
                f"{done.duplicates_dropped} duplicate(s) dropped) in {done.seconds:.1f} s: {done.merged_path}"
            ),
            highlight=False,
            soft_wrap=True,
        )
    return 0


def cmd_rescan(args: argparse.Namespace, console: Console) -> int:
    from grid.results.store import ResultStore
    from grid.trial.rescan import describe, rescan

    spec, _ = _load(args)
    if not any(m.pattern is not None for m in spec.metrics.values()):
        raise UsageError(f"{args.spec} has no metrics: patterns to apply (metrics: {{name: {{pattern: ...}}}})")
    store = ResultStore(args.results)
    if store.read(spec.name).num_rows == 0:
        raise ResultsError(
            f"no rows of sweep {spec.name!r} in {args.results} (sweeps there: {', '.join(store.sweeps())})"
        )
    console.print(plain(describe(rescan(store, spec), spec)), highlight=False, soft_wrap=True)
    return 0


def _results_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="tables, plots and a self-contained HTML page of the latest results")
    p.add_argument("results", nargs="?", default="results", help="results location (default: results)")
    p.add_argument("--sweep", default=None, help="report this sweep only (default: every sweep)")
    p.add_argument("--out", default="report", help="folder for index.html and the PNGs (default: report)")
    p.add_argument("--no-html", action="store_true", help="terminal tables only; write nothing")
    p.add_argument("--rows", default=None, help="axes for the rows, comma-separated (default: backend,memory_fraction)")
    p.add_argument("--cols", default=None, help="axes for the columns of a pivot table, comma-separated")
    p.add_argument(
        "--metric",
        default=None,
        help="the pivot table's metric, any measured column or the trials' own (test_acc, val_loss, ...); "
        "default: steady_epoch_s",
    )
    p.add_argument(
        "--verdict",
        default=None,
        metavar="FILE",
        help="a verdict of grid compare --json: shown above the sweeps (each config's verdict, the run its "
        "history moved at) with the history plots it names",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="regressions of CURRENT against BASELINE (a history of accepted runs); exit 1 on a regression, "
        "3 when CURRENT lacks configs, 6 when the noise is wider than the threshold",
    )
    p.add_argument("baseline", help="the baseline: a history of accepted runs (--accept), or one run's results")
    p.add_argument("current", help="results location of the run to check")
    p.add_argument("--metric", default="steady_epoch_s", help="metric to compare (default: steady_epoch_s)")
    p.add_argument("--threshold", default="5%", help="smallest change of the median that counts (default: 5%%)")
    p.add_argument(
        "--goal",
        choices=("max", "min"),
        default=None,
        help="is higher (max) or lower (min) better; default: the spec's metrics goal, else the metric's name",
    )
    p.add_argument("--sweep", default=None, help="sweep to compare on both sides (default: the only one)")
    p.add_argument("--baseline-sweep", default=None, help="the baseline's sweep, when its name differs")
    p.add_argument("--current-sweep", default=None, help="the current run's sweep, when its name differs")
    p.add_argument("--ignore", default=None, help="config keys left out of the join, comma-separated")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="configs of the baseline that the current run lacks are listed but do not fail it (exit 3 otherwise)",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the verdict as JSON")
    p.add_argument(
        "--history", type=int, default=10, metavar="N", help="accepted runs judged against and kept (default: 10)"
    )
    p.add_argument(
        "--accept",
        action="store_true",
        help="add CURRENT to the history when it is complete, every trial ok and the verdict ok or noisy "
        "(the first run starts a history)",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="write a history plot per metric here (PNG)")
    p.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="K",
        help="re-run just the flagged configs K times (needs --spec) and keep a regression only if they moved "
        "as far; default 0: a flagged change is a regression unconfirmed",
    )
    p.add_argument("--spec", default=None, help="the spec of the current run, for --confirm")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="its --set overrides"
    )
    add_arguments(p.add_argument_group("how --confirm re-runs (grid run's options)"), skip=("results",))
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("query", help="SQL (DuckDB) over the views `trials` (latest attempts) and `attempts`")
    p.add_argument("results", help="results location")
    p.add_argument("sql", help='e.g. "select backend, median(steady_epoch_s) from trials group by 1"')
    p.add_argument("--sweep", default=None, help="only this sweep's rows in the views")
    p.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    p.add_argument(
        "--all-columns", action="store_true", help="keep columns that are null in every row (left out by default)"
    )
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "rescan", help="apply the spec's metrics: patterns to the stored logs again; new values become new attempts"
    )
    p.add_argument("results", help="results location")
    p.add_argument("spec", nargs="?", default="grid.yaml", help="grid spec (YAML; default: grid.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="as grid run")
    p.set_defaults(func=cmd_rescan)

    p = sub.add_parser("compact", help="merge a sweep's per-trial files into one file, atomically")
    p.add_argument("results", help="results location")
    p.add_argument("--sweep", default=None, help="compact this sweep only (default: every sweep)")
    p.set_defaults(func=cmd_compact)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grid", description="Run experiment grids on pinned per-GPU Ray workers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="list a spec's trials and their count; nothing runs")
    _spec_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run a spec's trials (skipping those already done) into a results dataset")
    _spec_args(p)
    add_arguments(p)
    p.add_argument("--plain", action="store_true", help="one line per finished trial instead of the live display")
    p.add_argument("--strict", action="store_true", help="exit 1 if any trial did not end ok")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="per sweep: trials by status, failures with their log paths")
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("--sweep", default=None)
    p.set_defaults(func=cmd_status)
    _results_commands(sub)
    return parser


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), lines=True)  # a file's or a trial's name, escaped


def _warnings_to_stderr() -> None:
    """gpu-grid's warnings (a skipped file, a replaced worker, a store retry) on stderr, plainly."""
    logger = logging.getLogger("grid")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Plain("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


_sigterm: list[int] = []  # set when SIGTERM came (code in between may re-raise a plain KeyboardInterrupt)


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler, `timeout`, a cancelled CI job): stop as Ctrl-C does."""
    _sigterm.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The command's exit status; a reader that went away (or a closed stdout) ends it quietly."""
    ensure_std_streams()
    try:
        return _main(argv)
    except BrokenPipeError:
        quiet_stdout()  # what is still buffered, and Python's flush at exit, go nowhere
        return BROKEN_PIPE_EXIT


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _warnings_to_stderr()
    # Logs and pipes get wide tables; a terminal gets its own width.
    console = make_console() if sys.stdout.isatty() else make_console(width=160)
    err = make_console(stderr=True)
    main_thread = threading.current_thread() is threading.main_thread()
    _sigterm.clear()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        code = args.func(args, console)
        sys.stdout.flush()  # a reader that went away is seen here, not at exit
        return code
    except GridError as exc:
        err.print(Text.assemble(("error:", "bold red"), " ", plain(exc, lines=True)), highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:  # the sweep's own finally blocks have stopped its Ray and workers
        what = "terminated (SIGTERM)" if _sigterm else "interrupted"
        err.print(Text.assemble((what, "yellow"), ": finished trials are in the results; run again to resume"))
        return 143 if _sigterm else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
