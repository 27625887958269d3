"""Merging the records of a trial's processes into row columns (grid/trial/collect.py)."""

from __future__ import annotations

import json

import pytest

from grid.protocol import (
    Batch,
    BatchSource,
    Cap,
    Epoch,
    ErrorInfo,
    Evaluate,
    Fit,
    FrameworkMemory,
    Predict,
    ProcessRecord,
)
from grid.results.row import Identity, Row
from grid.shared import TrialStatus
from grid.trial import collect

CAP = "torch: set_per_process_memory_fraction(0.1) on 1 device(s)"


def record(pid, started, **fields):
    return ProcessRecord(pid=pid, started=started, **fields)


def fit(batch, *epochs, history=None, source=BatchSource.CALL):
    return Fit(Batch(batch, source), [Epoch(s, t, n) for s, t, n in epochs], history or {})


def test_two_fit_calls_steady_epochs_leave_out_each_calls_first():
    main = record(
        1,
        0.0,
        versions={"jax": "0.10", "numpy": "2"},
        caps={"jax": Cap("none (framework default)")},
        fits=[fit(32, (5.0, 5.0, 10), (1.0, 0.8, 10)), fit(32, (3.0, 3.0, 10), (1.2, 1.0, 10))],
    )
    measured = collect.measurements([main], {"backend": "jax"})
    epochs = measured.epochs
    assert epochs.epoch_times == [5.0, 1.0, 3.0, 1.2] and epochs.first_epoch_s == 5.0
    assert epochs.steady_epoch_s == pytest.approx(1.1)
    assert epochs.images_per_s == pytest.approx((320 / 0.8 + 320 / 1.0) / 2)  # training time, validation out
    assert epochs.fit_calls == 2 and epochs.global_batch == 32 and epochs.images_per_epoch == 320
    assert measured.framework.framework == "jax" and measured.notes == []


def test_rank_zero_is_the_primary_and_caps_are_counted_per_process():
    launcher = record(
        1,
        0.0,
        versions={"torch": "2.1"},
        caps={"torch": Cap("torch: ... when CUDA starts (it did not start in this process)", gpu_started=False)},
    )
    ranks = [
        record(
            10 + r,
            1.0 + r,
            rank=str(r),
            local_rank=str(r),
            versions={"torch": "2.1"},
            caps={"torch": Cap(CAP, gpu_started=True)},
            memory={"torch": FrameworkMemory(100.0 + r, {"r": r})},
            fits=[fit(64, (2.0, 2.0, 5), (1.0, 1.0, 5 + r))],
        )
        for r in (1, 0)
    ]
    measured = collect.measurements([launcher, *ranks], {"backend": "torch"})
    assert measured.epochs.images_per_epoch == 5 * 64  # rank 0's
    memory = measured.framework_memory
    assert memory.memory_cap_method == f"{CAP}, in each of 2 processes"
    assert memory.framework_peak_mib == 201.0 and set(json.loads(memory.framework_mem_json)) == {"10", "11"}
    assert measured.epochs.processes == 3


def test_predict_passes_are_the_epochs_of_an_inference_run():
    main = record(
        1,
        0.0,
        predicts=[Predict(4.0, Batch(50, BatchSource.CALL), 100), Predict(0.5, Batch(50, BatchSource.CALL), 100)],
    )
    epochs = collect.measurements([main], {}).epochs
    assert epochs.epoch_times == [4.0, 0.5] and epochs.images_per_s == 200.0


def test_a_batch_size_taken_from_the_config_is_noted():
    main = record(1, 0.0, fits=[fit(16, (1.0, 1.0, 4), source=BatchSource.CONFIG)])
    measured = collect.measurements([main], {"batch_size": 16})
    assert measured.epochs.images_per_s == 64.0 and measured.notes == [
        "images/s counts batches of 16: the trial's batch_size (the data does not show its batch size)"
    ]


def test_a_batch_size_nobody_shows_leaves_images_per_s_unknown_and_says_what_to_do():
    main = record(1, 0.0, fits=[Fit(Batch(None, BatchSource.UNKNOWN, data="MyGenerator"), [Epoch(1.0, 1.0, 4)])])
    measured = collect.measurements([main], {})
    assert measured.epochs.images_per_s is None and measured.notes == [
        "images/s unknown: the batch size is not shown by the data (MyGenerator); give the trial a batch_size "
        "(in the spec's params or axes) and images/s counts batches of it"
    ]


def test_reports_of_later_processes_win_and_a_functions_return_wins_over_reports():
    records = [
        record(1, 0.0, reports={"acc": 0.1, "f1": 0.5}, returned={"acc": 0.3}),
        record(2, 1.0, reports={"acc": 0.2}),
    ]
    assert collect.reported(records) == {"acc": 0.3, "f1": 0.5}


def test_values_land_in_measurement_columns_their_own_columns_or_are_refused():
    row, notes = Row(Identity()), []
    row.epochs.images_per_epoch = 100
    names = collect.apply_values(
        row,
        {
            "epoch_times": [2, 1, 1],
            "acc": 1,
            "status": "x",
            "batch_size": 3,
            "blob": {"a": 1},
            "versions": {"x": "1"},
            "images_per_s": None,
        },
        {"status", "batch_size"},
        notes,
    )
    assert names == ["acc"] and row.metrics.values == {"acc": 1.0}
    assert row.epochs.images_per_s == 100.0 and row.epochs.steady_epoch_s == 1.0
    assert row.framework.versions_json == '{"x": "1"}' and row.outcome.status is TrialStatus.ERROR
    assert len(notes) == 3 and "reported status not kept" in notes[0]


def test_history_final_values_and_evaluate():
    main = record(
        1,
        0.0,
        fits=[fit(8, (1.0, 1.0, 1), history={"loss": [0.9, 0.4], "val_accuracy": [0.5, 0.8]})],
        evaluates=[Evaluate(0.1, {"loss": 0.3, "accuracy": 0.85})],
    )
    values, series = collect.history([main])
    assert values == {"loss": 0.4, "val_accuracy": 0.8, "eval_loss": 0.3, "eval_accuracy": 0.85}
    assert series == {"loss": [0.9, 0.4], "val_accuracy": [0.5, 0.8]}


def test_the_earliest_error_is_the_trials():
    records = [
        record(1, 0.0, error=ErrorInfo("a.ProcessRaisedException", at=5.0)),
        record(2, 1.0, error=ErrorInfo("builtins.ValueError", "bad", "Traceback ...", at=4.0)),
    ]
    assert collect.first_error(records) == {
        "type": "builtins.ValueError",
        "message": "bad",
        "traceback": "Traceback ...",
        "at": 4.0,
    }
