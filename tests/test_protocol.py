"""The worker <-> trial protocol (grid/protocol.py): what the real trial side writes, the grid side
reads back typed; another protocol version is refused with a reason, never misread; the trial side
loads the protocol by its path in any trial interpreter, without the `grid` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trials import MXNET_PYTHON, REPO, SITE

from grid import protocol
from grid.protocol import (
    VERSION,
    Batch,
    BatchSource,
    Cap,
    Compiles,
    Env,
    Epoch,
    ErrorInfo,
    Evaluate,
    Exit,
    Fit,
    FrameworkMemory,
    Loop,
    Predict,
    ProcessRecord,
    ProtocolMismatch,
    StartedAs,
    TrialDocument,
)
from grid.trial import collect

PYTHONS = [
    sys.executable,
    pytest.param(
        str(MXNET_PYTHON),
        marks=pytest.mark.skipif(not MXNET_PYTHON.exists(), reason="no MXNet interpreter: make mxnet-env"),
    ),
]

SCRIPT = """
import numpy as np
from gridtrial import report
report(acc=np.float32(0.5), series=[1, 2.5], name="resnet")
report(acc=0.75)
raise RuntimeError("out of patience")
"""


def trial_env(trial_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "MXNET_", Env.PREFIX, "KERAS_"))}
    return {**base, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(SITE), Env.TRIAL: str(trial_path), **extra}


def write_document(tmp_path: Path, **fields) -> tuple[Path, Path]:
    records = tmp_path / "records"
    doc = TrialDocument(records_dir=str(records), trial_id="t1", attempt=2, **{"config": {"lr": 0.1}, **fields})
    path = tmp_path / "trial.json"
    path.write_text(doc.to_json())
    return path, records


@pytest.mark.parametrize("python", PYTHONS, ids=["venv", "mxnet-venv"])
def test_a_record_the_trial_side_wrote_reads_back_typed(tmp_path, python):
    path, records = write_document(tmp_path, workdir=str(tmp_path))
    before = time.time()
    proc = subprocess.run([python, "-c", SCRIPT], env=trial_env(path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == Exit.ERROR and "RuntimeError: out of patience" in proc.stderr
    found = collect.read_records(str(records))
    assert found.unread == []
    (rec,) = found
    assert isinstance(rec, ProcessRecord) and rec.protocol == VERSION and rec.pid != os.getpid()
    assert rec.started_as is StartedAs.FRESH and before <= rec.started <= rec.updated <= time.time()
    assert rec.reports == {"acc": 0.75, "series": [1.0, 2.5], "name": "resnet"}
    assert rec.rank is None and rec.fits == [] and rec.caps == {} and rec.returned is None
    error = rec.error
    assert isinstance(error, ErrorInfo) and error.type == "builtins.RuntimeError"
    assert error.message == "out of patience" and "Traceback" in error.traceback and error.at >= rec.started
    assert collect.reported(found) == rec.reports
    assert collect.first_error(found) == {
        "type": "builtins.RuntimeError",
        "message": "out of patience",
        "traceback": error.traceback,
        "at": error.at,
    }
    measured = collect.measurements(found, {"lr": 0.1})
    assert measured.epochs.processes == 1 and measured.notes == []


def test_a_trial_document_of_another_version_stops_the_bootstrap(tmp_path):
    path, records = write_document(tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), "protocol": VERSION + 1}))
    proc = subprocess.run(
        [sys.executable, "-c", "print('ran')"], env=trial_env(path), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == Exit.BOOTSTRAP_FAILED and "ran" not in proc.stdout
    assert "trial bootstrap failed" in proc.stderr and f"protocol version {VERSION + 1}" in proc.stderr
    assert f"reads version {VERSION}" in proc.stderr and not records.exists()


def test_a_hand_written_trial_document_needs_only_its_records_folder(tmp_path):
    doc = TrialDocument.from_dict({"records_dir": "r", "gpu_ids": [0, "GPU-x"], "extra": {"ignored": True}})
    assert doc.protocol == VERSION and doc.gpu_ids == ["0", "GPU-x"] and doc.trial_id == "trial"
    with pytest.raises(ValueError, match="names no records_dir"):
        TrialDocument.from_dict({"config": {}})


def test_records_of_another_version_are_refused_with_a_note(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    ours = ProcessRecord(pid=1, started=1.0, reports={"acc": 0.5})
    (folder / "1-1.json").write_text(ours.to_json())
    (folder / "2-2.json").write_text(json.dumps({**ours.to_dict(), "pid": 2, "protocol": VERSION + 1}))
    (folder / "3-3.json").write_text(json.dumps({"pid": 3, "started": 2.0, "caps": {"torch": "x"}}))  # before versions
    (folder / "4-4.json").write_text(json.dumps([1, 2]))
    (folder / "5-5.json").write_text('{"pid": 5, "sta')  # not whole JSON: skipped as before
    found = collect.read_records(str(folder))
    assert [r.pid for r in found] == [1]
    assert len(found.unread) == 3
    assert found.unread[0].startswith(f"record 2-2.json not read: a process record of protocol version {VERSION + 1};")
    assert "no protocol version" in found.unread[1] and "not a process record" in found.unread[2]
    measured = collect.measurements(found, {})
    assert measured.epochs.processes == 1 and measured.notes == found.unread
    assert collect.reported(found) == {"acc": 0.5}
    measured = collect.measurements(collect.Records([], found.unread), {})
    assert measured.epochs.processes == 0 and measured.notes == found.unread  # nothing read: the row still says why


def test_every_part_of_a_record_goes_through_json_and_back():
    record = ProcessRecord(
        pid=7,
        started=1.5,
        ppid=6,
        argv=["train.py"],
        rank="0",
        local_rank="0",
        started_as=StartedAs.WARM_RANK,
        import_s=2.5,
        versions={"jax": "0.5", "cuda": None},
        caps={"jax": Cap("jax: XLA_CLIENT_MEM_FRACTION=0.2"), "torch": Cap("torch: ...", gpu_started=False)},
        memory={"jax": FrameworkMemory(12.5, {"devices": {"gpu:0": {"peak_bytes_in_use": 1}}})},
        fits=[
            Fit(Batch(32, BatchSource.DATASET), [Epoch(1.0, 0.9, 10, 3.0, Compiles(2, 1, 0.5))], {"loss": [0.1]}),
            Fit(Batch(8), [Epoch(2.0, 1.5, 4, 5.0, None, 30)], {"val_acc": [0.5]}, Loop.LIGHTNING, {"lr": 0.01}),
        ],
        evaluates=[Evaluate(0.2, {"loss": 0.3})],
        predicts=[Predict(0.4, Batch(None, BatchSource.UNKNOWN, "Sequence"), 100)],
        reports={"acc": 0.5, "series": [1.0]},
        returned={"f1": 0.25},
        error=ErrorInfo("builtins.ValueError", "bad", "Traceback", 4.0),
        compiles=Compiles(3, 3, 1.0),
        imported=["numpy", "torch", "lightning"],
    )
    text = record.to_json()
    assert ProcessRecord.from_json(text) == record
    data = json.loads(text)
    assert data["started_as"] == "warm_rank" and data["fits"][0]["batch"]["source"] == "dataset"
    assert data["fits"][1]["loop"] == "lightning" and data["fits"][1]["epochs"][0]["samples"] == 30
    data["fits"][0]["epochs"][0]["from_a_newer_writer"] = 1  # unknown keys are ignored, at every level
    data["later_field"] = {"x": 1}
    assert ProcessRecord.from_dict(data) == record
    with pytest.raises(ProtocolMismatch):
        ProcessRecord.from_dict({**data, "protocol": VERSION + 1})


def test_batch_sources_say_where_the_figure_came_from():
    assert Batch(64, BatchSource.CALL).text == "the call's batch_size"
    assert Batch(32, BatchSource.KERAS_DEFAULT).text == "Keras' default batch_size (32)"
    assert Batch(None, BatchSource.UNKNOWN, "PyDataset").text.startswith("not shown by the data (PyDataset); give")
    assert all(Batch(1, source).text for source in BatchSource)


def test_every_knob_is_a_named_variable_read_when_used():
    names = {value for key, value in vars(Env).items() if key.isupper()}
    assert set(protocol.KNOBS) <= names and all(name.startswith(Env.PREFIX) for name in names)
    assert protocol.knob(Env.PROFILE, {}) == "" and protocol.knob(Env.FULL_EXIT, {Env.FULL_EXIT: "1"}) == "1"
    with pytest.raises(KeyError):
        protocol.knob("GRID_NOT_A_KNOB", {})
    assert protocol.config_var("batch_size") == "GRID_BATCH_SIZE"


SHADOW_AND_LOAD = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # a user's own `grid` first, then tasks/site
from gridtrial import protocol
from gridtrial.protocol import Env, ProcessRecord
print(json.dumps({"file": protocol.__file__, "version": protocol.VERSION, "env": Env.TRIAL,
                  "grid": "grid" in sys.modules, "pyarrow": "pyarrow" in sys.modules,
                  "record": ProcessRecord.from_json(ProcessRecord(1, 2.0).to_json()).pid}))
"""


@pytest.mark.parametrize("python", PYTHONS, ids=["venv", "mxnet-venv"])
@pytest.mark.parametrize("flags", [["-I"], ["-S", "-E"]], ids=["isolated", "no-site"])
def test_the_trial_side_loads_the_protocol_by_its_path(tmp_path, python, flags):
    """Without site or the environment (-I; -S -E), in either trial interpreter, and with a module
    of the user's named `grid` first on the path: the protocol is grid/protocol.py, and neither
    the `grid` package nor pyarrow is imported."""
    shadow = tmp_path / "user" / "grid"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('a user module named grid')\n")
    proc = subprocess.run(
        [python, *flags, "-c", SHADOW_AND_LOAD, str(shadow.parent), str(SITE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {
        "file": str(REPO / "grid" / "protocol.py"),
        "version": VERSION,
        "env": "GRID_TRIAL",
        "grid": False,
        "pyarrow": False,
        "record": 1,
    }


def test_a_trial_without_the_protocol_file_stops_instead_of_running_uncapped(tmp_path):
    """A tasks/site copied away from gpu-grid's tree cannot find grid/protocol.py: its trial process
    ends with Exit.BOOTSTRAP_FAILED (site.py would only print the error and go on)."""
    import shutil

    site = tmp_path / "elsewhere" / "tasks" / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("__pycache__"))
    path, _ = write_document(tmp_path)
    env = {**trial_env(path), "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == Exit.BOOTSTRAP_FAILED and "ran" not in proc.stdout
    assert "trial bootstrap failed" in proc.stderr and "gpu-grid's protocol is not at" in proc.stderr


def test_a_warm_parent_that_cannot_warm_up_exits_with_its_status(tmp_path):
    """A module whose import starts a thread would make every fork unsafe: the parent stops before
    it and exits Exit.WARM_UNSAFE, naming it; a module that fails to import is skipped (the trial
    imports it itself), and the parent serves with the rest."""
    (tmp_path / "starts_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    )
    env = {**trial_env(tmp_path / "none.json"), "PYTHONPATH": os.pathsep.join([str(SITE), str(tmp_path)])}
    env.pop(Env.TRIAL)
    zygote = [sys.executable, "-m", "gridtrial.zygote", str(tmp_path / "p.sock")]
    proc = subprocess.run([*zygote, "json", "starts_thread"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == Exit.WARM_UNSAFE
    state = json.loads(proc.stdout)
    assert state["ready"] is False and state["unsafe"] == "importing starts_thread started a thread"
    assert state["safe_modules"] == ["json"]
    serving = subprocess.Popen([*zygote, "no_such_module_here", "json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        state = json.loads(serving.stdout.readline())
        assert state["ready"] is True and state["imported"] == ["json"]
        assert state["skipped"][0].startswith("no_such_module_here (ModuleNotFoundError")
    finally:
        serving.terminate()
        serving.wait(10)


KERAS = """
import numpy as np, keras
x, y = np.zeros((40, 4), "float32"), np.zeros((40, 1), "float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0)
model.evaluate(x, y, verbose=0)
model.predict(x, verbose=0)
"""


@pytest.mark.slow
def test_keras_calls_are_typed_entries_of_the_record(tmp_path):
    path, records = write_document(tmp_path, config={"backend": "jax", "memory_fraction": 0.5})
    env = trial_env(path, KERAS_BACKEND="jax")
    proc = subprocess.run([sys.executable, "-c", KERAS], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = collect.read_records(str(records))
    (fit,) = rec.fits
    assert fit.batch == Batch(8, BatchSource.CALL) and len(fit.epochs) == 2 and set(fit.history) >= {"loss", "val_loss"}
    assert all(isinstance(e, Epoch) and e.steps == 4 and 0 < e.train_s <= e.s and e.end for e in fit.epochs)
    (evaluate,) = rec.evaluates
    assert evaluate.s > 0 and set(evaluate.logs) >= {"loss"}
    (predict,) = rec.predicts
    assert predict.batch == Batch(32, BatchSource.KERAS_DEFAULT) and predict.images == 40
    assert rec.caps["jax"].method.startswith("jax: XLA_CLIENT_MEM_FRACTION=0.5") and rec.caps["jax"].gpu_started is None
    assert set(rec.versions) >= {"jax", "jaxlib", "keras", "numpy"} and rec.memory["jax"].peak_mib is None
    measured = collect.measurements([rec], {"backend": "jax"})
    epochs = measured.epochs
    assert epochs.fit_calls == 1 and epochs.global_batch == 8 and epochs.images_per_epoch == 32
    assert measured.framework.framework == "jax" and measured.notes == []
