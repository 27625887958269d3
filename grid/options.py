"""How a sweep runs (`grid run`'s options, `grid.run(...)`'s keywords): declared once, here.

Each option is a field of `RunOptions` with its default and, where the command line has it, its
flag and help text; `grid run` builds its arguments from these declarations and `grid.run` takes
the same names as keywords, so the two can never disagree on a name, a default or a check.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from grid.errors import UsageError
from grid.results.lease import TTL_S
from grid.results.spool import RETRY_S, DeliveryOptions, default_state_dir


def option(
    default: Any,
    flag: str | None,
    help: str,
    *,
    kind: type = str,
    metavar: str | None = None,
    factory: Any = None,
) -> Any:
    """A run option: its default, and its command-line flag (None: the Python API only) with the
    type its text is read as (bool: a switch)."""
    meta = {"flag": flag, "help": help, "kind": kind, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunOptions:
    results: str = option(
        "results", "--results", "results location: a directory or URI (default: %(default)s)", metavar="URI"
    )
    runner: str = option(
        "ray", "--runner", "ray (default): pinned actors; local: threads of this process, no Ray (debugging)"
    )
    address: str | None = option(
        None,
        "--address",
        "Ray cluster to join (auto, HOST:PORT, ray://...); default: start a local Ray on 127.0.0.1",
        metavar="ADDRESS",
    )
    num_gpus: int | None = option(
        None,
        "--num-gpus",
        "GPUs a local Ray (or the local runner) offers; fakes GPUs on a CPU box (default: detected)",
        kind=int,
        metavar="N",
    )
    gpu_memory_mib: float | None = option(
        None,
        "--gpu-memory-mib",
        "memory of each GPU, to pack non-exclusive trials by footprint: a fake GPU's (--num-gpus on a "
        "CPU box), or less than a real card's to leave room for others (default: NVML's figure)",
        kind=float,
        metavar="MIB",
    )
    cpu_slots: int = option(
        1, "--cpu-slots", "trials at once per node when there are no GPUs (default %(default)s)", kind=int, metavar="N"
    )
    shared_results: bool = option(
        False,
        "--shared-results",
        "the --results directory is one shared filesystem at the same path on every node (NFS); "
        "without it a local directory is refused on a multi-node cluster",
        kind=bool,
    )
    retry_failed: bool = option(
        False, "--retry-failed", "also rerun trials whose latest attempt is error/timeout/killed", kind=bool
    )
    state_dir: str = option(
        None,
        "--state-dir",
        "this machine's gpu-grid state: rows kept while the store is down (written by the next run), "
        "the processes of a local Ray it started (default: %(default)s)",
        metavar="DIR",
        factory=default_state_dir,
    )
    store_retry_s: float = option(
        RETRY_S,
        "--store-retry",
        "how long every call to the results store retries a fault that passes (connection, timeout, 5xx, "
        "throttling), and a worker a row the store refuses, before the row stays on its disk and the "
        "sweep stops starting trials (default: %(default)s)",
        kind=float,
        metavar="SECONDS",
    )
    lease_ttl_s: float = option(
        TTL_S,
        "--lease-ttl",
        "results on S3: how long the sweep's lease outlives a driver that died before another may take "
        "it over (default: %(default)s; a local results folder frees it at once)",
        kind=float,
        metavar="SECONDS",
    )
    merge: bool = option(
        True,
        "--no-merge",
        "keep one file per attempt instead of merging the sweep's files into one at the end of the run "
        "(a merged sweep reads with any Parquet reader with no options; see grid compact)",
        kind=bool,
    )
    live: bool | None = option(None, None, "a live display (None: when stdout is a terminal; grid run --plain: off)")

    @property
    def delivery(self) -> DeliveryOptions:
        return DeliveryOptions(self.state_dir, self.store_retry_s)

    def check(self) -> None:
        if self.runner not in ("ray", "local"):
            raise UsageError(f"--runner: received {self.runner!r}, expected 'ray' or 'local'")
        if self.cpu_slots < 1:
            raise UsageError(f"--cpu-slots: received {self.cpu_slots}, expected an integer >= 1")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise UsageError(f"--num-gpus: received {self.num_gpus}, expected an integer >= 0")
        if self.runner == "local" and self.address:
            raise UsageError("--address needs --runner ray")
        if self.gpu_memory_mib is not None and not self.gpu_memory_mib > 0:
            raise UsageError(f"--gpu-memory-mib: received {self.gpu_memory_mib}, expected MiB > 0")
        if not self.store_retry_s >= 0:
            raise UsageError(f"--store-retry: received {self.store_retry_s}, expected seconds >= 0")
        if not self.lease_ttl_s > 0:
            raise UsageError(f"--lease-ttl: received {self.lease_ttl_s}, expected seconds > 0")

    @classmethod
    def of(cls, **given: Any) -> RunOptions:
        """Options from keywords (the Python API), an unknown name refused with the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise UsageError(f"unknown run option(s) {unknown}; valid options are {names}")
        return cls(**given)


def add_arguments(parser: Any, skip: tuple[str, ...] = ()) -> None:
    """`grid run`'s arguments, one per option that has a flag (but those named in `skip`)."""
    for f in dataclasses.fields(RunOptions):
        flag = f.metadata.get("flag")
        if flag is None or f.name in skip:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata["help"]}
        if f.metadata["kind"] is bool:
            kwargs["action"] = "store_false" if default else "store_true"
        else:
            kwargs["type"] = f.metadata["kind"]
            if f.metadata["metavar"]:
                kwargs["metavar"] = f.metadata["metavar"]
        if f.name == "runner":
            kwargs["choices"] = ("ray", "local")
        parser.add_argument(flag, **kwargs)


def from_arguments(args: argparse.Namespace, **more: Any) -> RunOptions:
    """The options `grid run` was given (and `more`, set by other flags: --plain)."""
    fields = dataclasses.fields(RunOptions)
    given = {f.name: getattr(args, f.name) for f in fields if f.metadata.get("flag") and f.name not in more}
    return RunOptions(**given, **more)
