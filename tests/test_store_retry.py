"""The store's one retry policy (grid/results/backend/retry.py) and what rests on it: transient
faults (a refused connection, a reset, a timeout, 5xx, throttling) are waited out with backoff
for the store's retry time and then said as StoreDown; other faults are raised at once; a call
inside another does not retry again. A log the store will not take waits in the spool and the
row says so; a lease whose driver on this host is gone is free; a running sweep merges its rows."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from rows_for_tests import make_row

from grid.errors import StoreDown
from grid.results.backend.retry import Retry, transient
from grid.results.compact import Background
from grid.results.lease import _expired
from grid.results.row import Row
from grid.results.spool import Spool
from grid.results.store import ResultStore
from grid.shared import hostname
from grid.spec.expand import expand
from grid.spec.parse import parse_spec
from grid.trial.attempt import commit_log

SPEC = parse_spec({"name": "r", "workload": "sleep", "axes": {"batch_size": [1, 2, 3, 4, 5]}})
TRIALS = expand(SPEC).trials


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused() -> OSError:
    try:
        socket.create_connection(("127.0.0.1", closed_port()), timeout=2)
    except OSError as exc:
        return exc
    raise AssertionError("a closed port took a connection")


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_what_passes_and_what_does_not():
    assert transient(refused())
    assert transient(ConnectionResetError()) and transient(TimeoutError())
    assert transient(client_error(503, "SlowDown")) and transient(client_error(500, "InternalError"))
    assert transient(client_error(400, "Throttling")) and transient(client_error(429, "TooManyRequests"))
    assert not transient(client_error(403, "AccessDenied")) and not transient(client_error(404, "NoSuchKey"))
    assert not transient(FileNotFoundError("x")) and not transient(PermissionError(13, "denied"))
    assert not transient(OSError(28, "No space left on device"))


def test_transient_faults_are_retried_with_backoff_then_said_as_store_down():
    slept: list[float] = []
    tries = iter([ConnectionResetError("reset"), refused(), None])

    def flaky() -> str:
        fault = next(tries)
        if fault:
            raise fault
        return "written"

    assert Retry(60, slept.append).call(flaky, "a row") == "written"
    assert slept == [0.5, 1.0]

    def down() -> None:
        raise refused()

    started = time.monotonic()
    with pytest.raises(StoreDown, match=r"did not answer \(a row\) for 1 s \(--store-retry\)"):
        Retry(1.0).call(down, "a row")
    assert 0.4 < time.monotonic() - started < 5


def test_other_faults_are_raised_at_once_and_an_inner_call_does_not_retry_again():
    slept: list[float] = []
    policy = Retry(60, slept.append)
    with pytest.raises(PermissionError):
        policy.call(lambda: (_ for _ in ()).throw(PermissionError(13, "denied")), "a row")
    inner_tries = []

    def inner() -> None:
        inner_tries.append(1)
        raise ConnectionResetError("reset")

    with pytest.raises(StoreDown):
        Retry(0.6, slept.append).call(lambda: policy.call(inner, "inner"), "outer")
    assert len(inner_tries) == 2 and slept == [0.5], "the outer call's deadline, one try of the inner per turn"


def test_an_unreachable_s3_store_is_store_down_not_a_traceback():
    store = ResultStore(f"s3://grid/r?endpoint_override=127.0.0.1:{closed_port()}&scheme=http&region=us-east-1", 0)
    with pytest.raises(StoreDown, match="NETWORK_CONNECTION|Could not connect|curlCode"):
        store.backend.write(store.layout.row("r", "t", 0), b"x")


def test_a_log_the_store_refuses_waits_in_the_spool_and_the_row_says_so(tmp_path):
    down = ResultStore(f"s3://grid/r?endpoint_override=127.0.0.1:{closed_port()}&scheme=http&region=us-east-1", 0)
    spool = Spool(down, str(tmp_path / "state"))
    log_file = tmp_path / "t-0.log"
    log_file.write_text("trained\n")
    row = make_row(SPEC, TRIALS[0])
    shown = commit_log(down, spool, str(log_file), "r", TRIALS[0].trial_id, 0, row)
    assert shown == down.backend.show(down.layout.log("r", TRIALS[0].trial_id, 0)), "the row names where it goes"
    kept = spool.dir / "sweep=r" / "_logs" / f"{TRIALS[0].trial_id}-0.log"
    assert kept.read_text() == "trained\n" and not log_file.exists()
    assert any("its log could not be written" in n and str(kept) in n for n in row.notes), row.notes
    assert row.status.value == "ok", "the trial's outcome is the trial's"

    up = ResultStore(str(tmp_path / "results"))  # a store that takes it: the spool's flush writes it
    spool = Spool(up, str(tmp_path / "state2"))
    log_file.write_text("trained\n")
    spool.keep_log(str(log_file), "r", TRIALS[0].trial_id, 0)
    assert spool.flush("r") == (0, [])
    assert Path(up.layout.log("r", TRIALS[0].trial_id, 0)).read_text() == "trained\n"
    assert not spool.kept_files("r")


def test_a_lease_whose_driver_on_this_host_is_gone_is_free():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    def doc(host: str, pid: int) -> bytes:
        return json.dumps({"host": host, "pid": pid, "since": time.time(), "expires": time.time() + 3600}).encode()

    assert _expired(doc(hostname(), gone.pid)), "its driver died: taken over at once"
    assert not _expired(doc(hostname(), os.getpid())), "a live driver keeps it"
    assert not _expired(doc("another-host", gone.pid)), "another host's driver is not ours to judge"


def test_a_running_sweep_merges_its_rows_every_n(tmp_path):
    store = ResultStore(str(tmp_path / "results"))
    merging = Background(store, "r", every=2)
    for trial in TRIALS:
        store.write_row(make_row(SPEC, trial))
        merging.stored()
        merging.wait()
    files = [os.path.basename(f) for f in store.files("r")]
    assert sum(f.startswith("compacted-") for f in files) == 2 and len(files) == 3, files
    rows = [Row.from_record(r) for r in store.read("r").to_pylist()]
    assert sorted(r.trial_id for r in rows) == sorted(t.trial_id for t in TRIALS), "each row once"
