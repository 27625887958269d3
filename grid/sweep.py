"""`grid run`: spec -> trials -> pool -> scheduler -> rows, with progress and a summary (grid.api.run
from Python). The one module above both the scheduler and the reports: it runs the one, then shows
what the other makes of the rows."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

from rich.console import Console

from grid.errors import GridError, StorageError
from grid.options import RunOptions
from grid.reports.summary import print_summary
from grid.results.compact import COMPACT_EVERY, compact_sweep
from grid.results.dedupe import latest_attempts
from grid.results.lease import Lease
from grid.results.spool import Spool
from grid.results.store import ResultStore
from grid.scheduler.driver import Scheduler, SweepOutcome
from grid.scheduler.localray import LocalRay, end_leftovers
from grid.scheduler.pool import LocalPool, Pool
from grid.scheduler.progress import make_progress
from grid.scheduler.resume import Pending, plan_attempts
from grid.scheduler.search import SearchRun, plan_text
from grid.scheduler.workdir_writes import Snapshot, changed, own_output, snapshot, warning
from grid.shared import Trial, TrialStatus
from grid.spec.expand import Expansion, expand
from grid.spec.model import GridSpec
from grid.spec.search import SearchSpec
from grid.text import make_console, plain
from grid.trial.nvml import visible_gpu_ids

log = logging.getLogger("grid")


def say(console: Console, line: str) -> None:
    """A line of gpu-grid's own (its `[grid]` prefix is text, not rich markup; what it quotes from
    trials, escaped)."""
    console.print(plain(line, lines=True), highlight=False, soft_wrap=True)


def describe_with(axes: list[str], search: SearchSpec | None = None) -> Callable[[Trial], str]:
    if search is None:
        return lambda trial: trial.describe(axes)
    shown = [*axes, search.axis]
    return lambda trial: f"{trial.tags.get('search_role', '')} {trial.describe(shown)}".strip()


def print_searches(store: ResultStore, spec: GridSpec, console: Console) -> None:
    """Each search's answer, from what the results hold."""
    from grid.reports.searches import search_table
    from grid.reports.terminal import rich_table

    view = search_table(latest_attempts(store.read(spec.name)).to_pylist(), list(spec.axes), f"sweep {spec.name}")
    if view is not None:
        console.print(rich_table(view))


def _open_pool(spec: GridSpec, store: ResultStore, opts: RunOptions) -> tuple[Pool, LocalRay | None]:
    if opts.runner == "local":
        # --num-gpus N: N GPUs (fake ones on a CPU box); default: the machine's own, as NVML lists them
        gpus = [str(i) for i in range(opts.num_gpus)] if opts.num_gpus is not None else visible_gpu_ids()
        pool: Pool = LocalPool(
            spec, store, gpus=gpus, cpu_slots=opts.cpu_slots, delivery=opts.delivery, gpu_memory_mib=opts.gpu_memory_mib
        )
        return pool, None
    if opts.address is None:
        # Ray's single-node mode binds 127.0.0.1 only; Ray reads this when it is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from grid.results.storage_check import check_results_location
    from grid.scheduler.raypool import RayPool, connect  # Ray only when it is used

    local = connect(opts.address, opts.num_gpus, state_dir=opts.state_dir)
    try:
        check_results_location(store, opts.shared_results)
        pool = RayPool(
            spec, store, cpu_slots=opts.cpu_slots, delivery=opts.delivery, gpu_memory_mib=opts.gpu_memory_mib
        )
        if local:
            local.record()  # its workers and agents are up now
        return pool, local
    except BaseException:
        _stop(local)
        raise


def _stop(local: LocalRay | None) -> None:
    """Stop the local Ray this driver started (a cluster it joined is not ours to stop)."""
    if local is not None:
        import ray

        ray.shutdown()
        local.forget()


def _workdir(spec: GridSpec, store: ResultStore, opts: RunOptions) -> Snapshot:
    """The workdir's files, less the results, the state folder and this process's own output."""
    return snapshot(spec.workdir, [store.backend.local_path(store.layout.root) or "", opts.state_dir, *own_output()])


def _shared_writes(
    before: Snapshot | None, attempts: int, spec: GridSpec, store: ResultStore, opts: RunOptions
) -> str | None:
    """The warning about files that changed in the trials' shared workdir while they ran, if any."""
    if before is None or attempts < 2:
        return None
    paths = changed(before, _workdir(spec, store, opts))
    return warning(paths, spec.workdir, attempts) if paths else None


def run_sweep(
    spec: GridSpec, opts: RunOptions, console: Console | None = None, expansion: Expansion | None = None
) -> SweepOutcome:
    opts.check()
    console = console or make_console()
    expansion = expansion or expand(spec)
    store = ResultStore(opts.results, opts.store_retry_s)
    # First, before anything is planned: a killed driver's local Ray may still be finishing trials.
    end_leftovers(opts.state_dir)
    lease = Lease(store, spec.name, opts.lease_ttl_s).acquire()
    try:
        outcome = _run_leased(spec, opts, console, expansion, store, lease)
        if opts.merge:
            _merge(store, spec.name)
        return outcome
    except (GridError, OSError):  # stopped by the store or the cluster: what finished is merged too
        if opts.merge:
            _merge(store, spec.name)
        raise
    finally:
        lease.release()


def _merge(store: ResultStore, sweep: str) -> None:
    """The sweep's files merged into one (compact.py), so that at rest every column has one type in
    one file and pandas, pyarrow, polars and DuckDB read the folder with no options. Never the
    run's undoing: a store that refuses is said, and the next run (or `grid compact`) merges."""
    try:
        compact_sweep(store, sweep)
    except Exception as exc:
        log.warning("[grid] the rows of sweep %r stay in one file each (merging them failed: %s)", sweep, exc)


def _run_leased(
    spec: GridSpec, opts: RunOptions, console: Console, expansion: Expansion, store: ResultStore, lease: Lease
) -> SweepOutcome:
    _flushed(console, spec.name, *Spool(store, opts.state_dir).flush(spec.name))
    searches = SearchRun(spec, expansion, store, opts.retry_failed) if spec.search else None

    def plan() -> tuple[list[Pending], int]:
        if searches:
            return searches.next_round(), 0
        return plan_attempts(spec, expansion.trials, store, opts.retry_failed)

    pending, skipped = plan()
    axes = list(spec.axes)
    if not pending:
        done = f"all {len(searches.combos)} searches" if searches else f"all {len(expansion.trials)} trials"
        say(
            console,
            f"[grid] {done} of sweep {spec.name!r} already have terminal results in {opts.results}; nothing to "
            f"run (--retry-failed reruns error/timeout/killed)",
        )
        if searches:
            print_searches(store, spec, console)
        return SweepOutcome(rows=[], total=len(expansion.trials), skipped=skipped)
    pool, local_ray = _open_pool(spec, store, opts)
    try:
        if _flushed(console, spec.name, *pool.flush(spec.name)):  # rows other nodes kept: plan again
            pending, skipped = plan()
        if not pool.on_gpu:
            say(
                console,
                f"[grid] no GPUs found: running on {len(pool.workers())} CPU slot(s) "
                f"(--cpu-slots); GPU memory columns stay empty",
            )
        else:
            say(
                console,
                f"[grid] {len(pool.workers())} GPU worker(s): "
                + ", ".join(f"{w.name}={','.join(w.gpu_ids)}" for w in pool.workers()),
            )
        progress = make_progress(describe_with(axes, spec.search), opts.live)
        scheduler = Scheduler(
            spec,
            store,
            pool,
            progress,
            delivery=opts.delivery,
            heartbeat=lease.refresh,
            compact_every=COMPACT_EVERY if opts.merge else 0,
        )
        before = None if spec.workload_def.builtin else _workdir(spec, store, opts)  # built-ins write nothing there
        if searches:
            outcome = searches.run(scheduler, pending, lambda line: say(console, line))
        else:
            outcome = scheduler.run(pending, skipped)
        pool.flush(spec.name)  # logs and trial folders the store refused during the run, if it takes them now
    finally:
        pool.close()
        _stop(local_ray)
    shared = _shared_writes(before, len(outcome.rows), spec, store, opts)
    if searches:
        print_searches(store, spec, console)
        if shared:
            say(console, shared)
        return outcome
    rows = sorted((r for r in outcome.rows if r.status is not TrialStatus.LOST), key=lambda r: r.trial_id)
    order = {t.trial_id: t.index for t in expansion.trials}
    rows.sort(key=lambda r: order.get(r.trial_id, 0))
    print_summary(
        rows,
        axes,
        f"sweep {spec.name}: {len(rows)} trial(s) run now, {skipped} from earlier runs; results in {opts.results}",
        console,
    )
    if shared:
        say(console, shared)
    return outcome


def _flushed(console: Console, sweep: str, written: int, errors: list[str]) -> int:
    """Say what a spool flush did; a store still down stops the run before anything else."""
    if errors:
        raise StorageError(
            f"{len(errors)} row(s) of sweep {sweep!r} kept from an earlier run could not be written yet; "
            f"nothing was run. First: {errors[0]}"
        )
    if written:
        say(
            console,
            f"[grid] wrote {written} row(s) of sweep {sweep!r} kept from an earlier run when the store was down",
        )
    return written


def plan_lines(spec: GridSpec, expansion: Expansion) -> list[str]:
    axes = list(spec.axes)
    what = spec.workload if spec.workload_def.builtin else spec.workload_def.target.text()
    lines = [
        f"sweep {spec.name!r}: {what}, {len(expansion.trials)} "
        + ("search(es), one per combination" if spec.search else "trial(s)")
        + f" = {expansion.combinations} combination(s) - {expansion.excluded} excluded, x {spec.repeats} repeat(s)"
    ]
    if not spec.workload_def.builtin:
        lines.append(f"runs in {spec.workdir}; script: {spec.script.note()}")
    moved = [*axes, spec.search.axis] if spec.search else axes
    fixed = {k: v for k, v in {**spec.workload_def.defaults(), **spec.params}.items() if k not in moved}
    lines.append("fixed: " + (", ".join(f"{k}={json.dumps(v)}" for k, v in fixed.items()) or "-"))
    if spec.metrics:
        lines.append(
            "metrics: "
            + ", ".join(
                m.name
                + (f" /{m.pattern.pattern}/" if m.pattern else " (reported)")
                + (f" ({m.goal})" if m.goal else "")
                for m in spec.metrics.values()
            )
        )
    for i in expansion.unused_excludes:
        lines.append(f"warning: exclude[{i}] matches no trial; check its values")
    if spec.search:
        lines.append(plan_text(spec.search, len(expansion.trials)))
    for trial in expansion.trials:
        what = "search over" if spec.search else trial.trial_id
        lines.append(f"  {what}  gpus={trial.gpus}  {trial.describe(axes)}")
    return lines
