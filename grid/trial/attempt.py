"""One attempt of one trial, start to finish: its process (launch) in isolation (isolate), what
the trial's processes recorded (collect), the `metrics:` patterns over its output (output), how
it ended (classify), and the row written to the results dataset.

Called by a `GpuWorker` actor or a local slot (grid/scheduler); never imports a framework or tasks/.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import socket
import tempfile
import time

import pyarrow as pa

from grid.errors import StorageError
from grid.protocol import Env
from grid.results.backend.retry import describe
from grid.results.metric_types import MetricTypes
from grid.results.row import Energy, Files, Identity, Process, Row
from grid.results.schema import BASE_NAMES, REPORTABLE, known_goal
from grid.results.spool import Delivered, DeliveryOptions, Spool, deliver
from grid.results.store import ResultStore, encode_row
from grid.results.trialdir import TrialFolder
from grid.results.window import is_short, why_short, window_of
from grid.shared import AttemptTimes, Placement, Trial, TrialStatus, utc_time
from grid.spec.model import GridSpec
from grid.trial import collect, compilecache, cotenants, gpulock, rows, warm
from grid.trial.classify import classify
from grid.trial.contain import contain
from grid.trial.cotenants import Tenancy
from grid.trial.isolate import ChildOutcome, run_child
from grid.trial.launch import Launch, prepare
from grid.trial.nvml import GpuView, NvmlSampler, gpu_samplers
from grid.trial.oom import AllocatorWatch
from grid.trial.output import bound, log_tail, scan

log = logging.getLogger("grid")


def measure(row: Row, spec: GridSpec, trial: Trial, records: collect.Records, log_file: str, offset: int) -> None:
    """Put what the trial measured and reported into its row, with its notes and metric
    directions. The `metrics:` patterns read the output from `offset` on (this attempt's own lines)."""
    measured = collect.measurements(records, trial.config)
    row.epochs, row.start, row.framework = measured.epochs, measured.start, measured.framework
    row.framework_memory = measured.framework_memory
    notes = measured.notes
    found = scan(log_file, offset, spec.metrics, len(row.epochs.epoch_times or []) or trial.config.get("epochs"))
    history, series = collect.history(records)
    values = {**history, **found.values, **collect.reported(records)}
    notes += found.notes
    if measured.how and values.get("epoch_times") is None:  # epochs the trial gave itself win
        notes.append(measured.how)
    taken = (BASE_NAMES | set(trial.config)) - REPORTABLE
    metrics = collect.apply_values(row, values, taken, notes)
    seconds, steps = measured.window
    if seconds is None or isinstance(values.get("epoch_times"), list):  # epochs the trial gave itself
        seconds, steps = window_of({"epoch_times": row.epochs.epoch_times})
    row.conditions.steady_window_s, row.conditions.steady_steps = seconds, steps
    row.conditions.window_short = is_short(seconds, steps)
    if row.conditions.window_short:
        assert seconds is not None
        notes.append(why_short(seconds, steps))
    series.update(found.series)
    declared = {name: m.goal for name, m in spec.metrics.items()}

    def rank(name: str) -> int:  # the spec's own metrics first, then reported ones, then History's
        return 0 if name in declared or name in found.values else 1 if name not in history else 2

    goals = {name: declared.get(name) or known_goal(name) for name in sorted(metrics, key=rank)}
    row.metrics.series_json = json.dumps(series, sort_keys=True) if series else None
    row.metrics.metric_goals_json = json.dumps(goals) if goals else None
    row.notes.extend(notes)


def declared_types(spec: GridSpec) -> dict[str, pa.DataType]:
    """The column types the spec's `metrics:` patterns declare (a number unless `type: text`)."""
    kinds = {"number": pa.float64(), "text": pa.string()}
    return {name: kinds[m.type] for name, m in spec.metrics.items() if m.pattern is not None}


def energy_per_work(
    energy: Energy,
    epoch_times: list[float] | None,
    images_per_epoch: int | None,
    samplers: list[NvmlSampler],
    spans: list[tuple[float, float, int]],
) -> None:
    """Energy per steady epoch and per image trained in them: the GPUs' energy between each steady
    epoch's start and end (NVML samples, interpolated). Without epoch times (a script that is not a
    Keras fit), the whole trial's energy over all its epochs, start-up included, and the method says so."""
    if energy.energy_j is None:
        return
    per_epoch = [samplers[0].energy_between(t0, t1) for t0, t1, _ in spans] if samplers and spans else []
    if per_epoch and None not in per_epoch:
        steady = sum(e for e in per_epoch if e is not None)
        energy.energy_per_epoch_j = steady / len(per_epoch)
        energy.joules_per_image = steady / sum(images for _, _, images in spans)
        energy.energy_method = f"{energy.energy_method}; per epoch and image: the steady epochs"
        return
    epochs = len(epoch_times or [])
    if not epochs:
        return
    energy.energy_per_epoch_j = energy.energy_j / epochs
    energy.joules_per_image = energy.energy_j / (images_per_epoch * epochs) if images_per_epoch else None
    energy.energy_method = f"{energy.energy_method}; per epoch and image: the whole trial (no epoch times)"


def _start(
    launch: Launch,
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    log_file: str,
    samplers: list,
    plan: warm.Plan | str,
    earlier_files: int = 0,
) -> tuple[ChildOutcome | None, int]:
    """Run the attempt's process; also where its own output starts in the log."""
    with open(log_file, "wb") as log:  # an attempt number is never reused: a log holds one run
        header = [
            f"trial {trial.trial_id} attempt {attempt} on {placement.host} "
            f"GPUs {list(placement.gpu_ids) or 'none (CPU slot)'} in {launch.cwd}",
            launch.command,
            f"its own folder ({Env.TRIAL_DIR}): {launch.explicit.get(Env.TRIAL_DIR, '-')}"
            + (f" ({earlier_files} file(s) from earlier attempts)" if earlier_files else ""),
        ]
        log.write("".join(f"[gpu-grid] {line}\n" for line in header).encode())
        if launch.missing:
            log.write(f"[gpu-grid] cannot start: {launch.missing}\n".encode())
            return None, log.tell()
        parent, why = warm_parent(plan)
        log.write(f"[gpu-grid] {'warm start from ' + parent.describe() if parent else 'cold start: ' + why}\n".encode())
        offset = log.tell()
    return run_child(
        launch.argv,
        env=launch.env,
        cwd=launch.cwd,
        log_path=log_file,
        timeout_s=spec.timeout_s,
        samplers=samplers,
        interval_s=spec.sample_interval_ms / 1000,
        memory_limit_mib=spec.memory_limit_mib,
        box=contain(f"{trial.trial_id}-{attempt}", launch.env[Env.TRIAL]),
        bootstrapped=launch.bootstrapped,
        warm=parent,
        # a probe asks only whether the value runs out of memory: the allocator's first failure answers it
        watch=AllocatorWatch(log_file, offset) if trial.tags.get("search_role") == "probe" else None,
    ), offset


def warm_parent(plan: warm.Plan | str) -> tuple[warm.Parent | None, str]:
    """The warm parent this attempt forks from, or why it starts as a fresh interpreter."""
    if isinstance(plan, str):
        return None, plan
    parent, why = warm.starter().parent(plan)
    return parent, why or ""


def warm_up() -> None:
    """Pay a worker's one-time costs of finishing a row before its first trial, not between its
    first and second: pyarrow's first Parquet write of a row with timestamps imports pandas
    (~0.2 s alone; 2-3 s when 16 workers reach it at once on a 2-core box, which was the scheduler
    benchmark's p99 GPU idle gap), and the full collections of everything imported."""
    row = Row(Identity(sweep="warm-up", trial_id="0"))
    row.times.started_at = row.times.ended_at = utc_time(time.time())
    row.notes.append("warm-up")
    row.epochs.epoch_times, row.process.wall_s = [0.0], 0.0
    encode_row(row)
    # What the worker imported (ray, pyarrow, pandas: ~10^6 objects) stays for its life: a full
    # collection no longer walks it (0.25-0.6 s each, measured on a 2-core box).
    gc.collect()
    gc.freeze()


def run_attempt(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    store: ResultStore,
    times: AttemptTimes,
    delivery: DeliveryOptions | None = None,
    metric_types: MetricTypes | None = None,
) -> Delivered:
    """Run one attempt on this worker and hand its row to the store (kept on this machine's disk
    until the store takes it). Whatever fails on the worker's side is the row's `error` with its
    evidence, never a crash of the worker: `lost` is only for a worker or node that died.
    `metric_types`: the sweep's metric column types as this worker knows them."""
    delivery = delivery or DeliveryOptions()
    metric_types = metric_types or MetricTypes(store, spec.name)
    spool = Spool(store, delivery.state_dir)
    try:
        gpus = gpu_samplers(placement.gpu_ids)
        keys = gpus.uuids

        def waiting(gpu: str) -> None:
            log.warning("[grid] trial %s waits for GPU %s, held by a trial of another sweep", trial.trial_id, gpu)

        fake = [] if keys or not placement.on_gpu else [f"worker-{name}" for name in placement.workers]
        with (
            gpulock.holding(keys, trial.exclusive, waiting=waiting) as waited,
            Tenancy(cotenants.places(keys, fake), spec.name, trial.trial_id, attempt) as stay,
        ):
            cache = compilecache.folder(delivery.state_dir, spec.name)
            row = attempt_row(spec, trial, attempt, placement, store, times, gpus, cache, spool)
        row.sharing.gpu_wait_s = waited if keys else None
        # NVML's processes are anyone's (our co-tenants' too): they name the sharing our records do not
        foreign = [f"pid:{pid}" for pid in row.gpu_memory.gpu_foreign_pids or []]
        row.sharing.shared_with = (stay.others() or foreign) if placement.on_gpu else None
        if row.sharing.shared_with:
            row.notes.append(
                f"shared its GPU with {len(row.sharing.shared_with)} other trial(s) or process(es) while it ran: "
                + ("its timings and energy (the whole GPU's) " if row.energy.energy_j is not None else "its timings ")
                + "are not those of a GPU of its own"
            )
        try:
            row.notes.extend(metric_types.settle(row.metrics.values, declared_types(spec)))
        except StorageError as exc:  # the sweep's column types are the store's: kept as measured
            row.notes.append(f"its metrics' column types could not be read from the results store ({exc})")
        if row.times.ended_at is not None and row.process.wall_s is not None:
            row.start.finish_s = max(0.0, time.time() - row.times.ended_at.timestamp())
        data = encode_row(row, spec.param_kinds(), metric_types.known())
    except Exception as exc:
        row = rows.failed(spec, trial, attempt, placement, times, TrialStatus.ERROR, exc, note=rows.WORKER_FAILED)
        data = encode_row(row, spec.param_kinds())
    return deliver(spool, row, data, delivery.retry_s)


def commit_log(
    store: ResultStore, spool: Spool, log_file: str, sweep: str, trial_id: str, attempt: int, row: Row
) -> str:
    """The log put beside the results; one the store would not take (after its retries) waits in
    the spool, and the row says so: the trial's outcome is the trial's, never the store's."""
    try:
        return store.commit_log(log_file, sweep, trial_id, attempt)
    except Exception as exc:
        kept = spool.keep_log(log_file, sweep, trial_id, attempt)
        row.notes.append(
            f"its log could not be written to the results store ({describe(exc)}); it is kept on "
            f"{socket.gethostname()} at {kept} until a `grid run` of the sweep writes it there"
        )
        return store.backend.show(store.layout.log(sweep, trial_id, attempt))


def attempt_row(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    store: ResultStore,
    times: AttemptTimes,
    gpus: GpuView | None = None,
    compile_dir: str | None = None,
    spool: Spool | None = None,
) -> Row:
    """Run one attempt in an isolated process tree; returns its row. `compile_dir`: this node's
    compilation cache for the sweep (none: the trial compiles cold); `spool`: where a log or trial
    folder the store would not take waits for it."""
    gpus = gpus or GpuView()
    spool = spool or Spool(store, DeliveryOptions().state_dir)
    if gpus.facts.gpu_total_mib is None and placement.gpu_ids and placement.gpu_memory_mib:
        gpus.facts.gpu_total_mib = placement.gpu_memory_mib  # a fake GPU: the memory gpu-grid was told
    scratch = tempfile.mkdtemp(prefix=f"gpu-grid-{trial.trial_id}-{attempt}-")
    folder = TrialFolder(store, spec.name, trial.trial_id, attempt)
    own_dir, earlier_files = folder.open()
    try:
        gpu_info = {"gpu_total_mib": gpus.facts.gpu_total_mib} if gpus.facts.gpu_total_mib else {}
        launch = prepare(spec, trial, attempt, placement, scratch, gpu_info, compile_dir, own_dir)
        log_file = store.local_log_file(spec.name, trial.trial_id, attempt)
        plan = warm.plan(launch.argv, launch.env, trial.config, launch.bootstrapped, launch.cwd)
        with folder.syncing(own_dir):
            outcome, offset = _start(
                launch, spec, trial, attempt, placement, log_file, gpus.samplers, plan, earlier_files
            )
        records = collect.read_records(os.path.join(scratch, "records"))
        if isinstance(plan, warm.Plan) and records:
            warm.learn(plan, [m for r in records for m in r.imported])
        row = rows.begin(spec, trial, attempt, placement, times)
        measure(row, spec, trial, records, log_file, offset)
        tail = log_tail(log_file)
        cut = bound(log_file)
        if cut:
            row.notes.append(cut)
        log_path = commit_log(store, spool, log_file, spec.name, trial.trial_id, attempt, row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    trial_dir = folder.close(own_dir, lambda local: str(spool.keep_folder(local, spec.name, trial.trial_id, attempt)))

    row.gpu = gpus.facts
    row.gpu_memory.gpu_mem_method = gpus.unavailable
    for sampler in gpus.samplers:
        row.gpu_memory, row.energy, row.gpu_use = sampler.memory(), sampler.energy(), sampler.utilisation()
        sampler.state.fill(row.conditions)
    row.files = Files(
        child_env_json=json.dumps(launch.recorded(), sort_keys=True), log_path=log_path, trial_dir=trial_dir
    )
    row.identity.command = launch.command
    row.notes.extend(folder.notes)
    energy_per_work(
        row.energy, row.epochs.epoch_times, row.epochs.images_per_epoch, gpus.samplers, collect.steady_spans(records)
    )
    error = collect.first_error(records)
    if outcome is None:
        kind, _, message = (launch.missing or "").partition(": ")
        row.outcome.status = TrialStatus.ERROR
        row.outcome.error_type, row.outcome.error_message, row.outcome.error_tail = kind, message, message
        row.times.started_at = row.times.ended_at = utc_time(time.time())
        return row
    verdict = classify(outcome, error, tail)
    if verdict["status"] is TrialStatus.OK and error:
        row.notes.append(
            f"a process of the trial raised {error['type']}: {error['message'][:200]} (the trial exited 0)"
        )
    if row.gpu_memory.gpu_foreign_pids:
        row.notes.append(
            f"other processes used its GPUs during the trial (pids {row.gpu_memory.gpu_foreign_pids}): its timings "
            f"and memory may be polluted"
        )
    row.notes.extend(outcome.notes)
    if outcome.stray_killed:
        row.notes.append(f"{outcome.stray_killed} process(es) of the trial outlived it and were ended")
    row.outcome.status = verdict["status"]
    row.outcome.error_type = verdict["error_type"]
    row.outcome.error_tail = verdict["error_tail"]
    row.outcome.error_message = verdict.get("error_message")
    row.outcome.exit_code, row.outcome.signal = outcome.exit_code, outcome.signal
    row.process = Process(outcome.wall_s, outcome.peak_rss_mib, outcome.stray_killed, outcome.containment)
    row.start.start = outcome.start
    row.start.warm_modules = list(outcome.warm_modules) if outcome.warm_modules else None
    row.times.started_at, row.times.ended_at = utc_time(outcome.started_at), utc_time(outcome.ended_at)
    return row
