"""Merging the records of a trial's processes into row columns (grid/trial/collect.py)."""

from __future__ import annotations

import json

import pytest

from grid.trial import collect

CAP = "torch: set_per_process_memory_fraction(0.1) on 1 device(s)"


def record(pid, started, **fields):
    base = {
        "pid": pid,
        "started": started,
        "rank": None,
        "local_rank": None,
        "versions": {},
        "caps": {},
        "memory": {},
        "fits": [],
        "evaluates": [],
        "predicts": [],
        "reports": {},
        "returned": None,
        "error": None,
    }
    return {**base, **fields}


def fit(batch, *epochs, history=None, source="the call's batch_size"):
    return {
        "batch_size": batch,
        "batch_source": source,
        "history": history or {},
        "epochs": [{"s": s, "train_s": t, "steps": n} for s, t, n in epochs],
    }


def test_two_fit_calls_steady_epochs_leave_out_each_calls_first():
    main = record(
        1,
        0.0,
        versions={"jax": "0.10", "numpy": "2"},
        caps={"jax": "none (framework default)"},
        fits=[fit(32, (5.0, 5.0, 10), (1.0, 0.8, 10)), fit(32, (3.0, 3.0, 10), (1.2, 1.0, 10))],
    )
    fields, notes = collect.measurements([main], {"backend": "jax"})
    assert fields["epoch_times"] == [5.0, 1.0, 3.0, 1.2] and fields["first_epoch_s"] == 5.0
    assert fields["steady_epoch_s"] == pytest.approx(1.1)
    assert fields["images_per_s"] == pytest.approx((320 / 0.8 + 320 / 1.0) / 2)  # training time, validation out
    assert fields["fit_calls"] == 2 and fields["global_batch"] == 32 and fields["images_per_epoch"] == 320
    assert fields["framework"] == "jax" and notes == []


def test_rank_zero_is_the_primary_and_caps_are_counted_per_process():
    launcher = record(
        1,
        0.0,
        versions={"torch": "2.1"},
        caps={"torch": "torch: ... when CUDA starts (it did not start in this process)"},
    )
    ranks = [
        record(
            10 + r,
            1.0 + r,
            rank=str(r),
            local_rank=str(r),
            versions={"torch": "2.1"},
            caps={"torch": CAP},
            memory={"torch": {"peak_mib": 100.0 + r, "detail": {"r": r}}},
            fits=[fit(64, (2.0, 2.0, 5), (1.0, 1.0, 5 + r))],
        )
        for r in (1, 0)
    ]
    fields, _ = collect.measurements([launcher, *ranks], {"backend": "torch"})
    assert fields["images_per_epoch"] == 5 * 64  # rank 0's
    assert fields["memory_cap_method"] == f"{CAP}, in each of 2 processes"
    assert fields["framework_peak_mib"] == 201.0 and set(json.loads(fields["framework_mem_json"])) == {"10", "11"}
    assert fields["processes"] == 3


def test_predict_passes_are_the_epochs_of_an_inference_run():
    main = record(
        1,
        0.0,
        predicts=[
            {"s": 4.0, "batch_size": 50, "batch_source": "the call's batch_size", "images": 100},
            {"s": 0.5, "batch_size": 50, "images": 100},
        ],
    )
    fields, _ = collect.measurements([main], {})
    assert fields["epoch_times"] == [4.0, 0.5] and fields["images_per_s"] == 200.0


def test_a_batch_size_taken_from_the_config_is_noted():
    main = record(1, 0.0, fits=[fit(16, (1.0, 1.0, 4), source="the trial's batch_size (the data does not show it)")])
    fields, notes = collect.measurements([main], {"batch_size": 16})
    assert fields["images_per_s"] == 64.0 and notes == [
        "images/s counts batches of 16: the trial's batch_size (the data does not show it)"
    ]


def test_reports_of_later_processes_win_and_a_functions_return_wins_over_reports():
    records = [
        record(1, 0.0, reports={"acc": 0.1, "f1": 0.5}, returned={"acc": 0.3}),
        record(2, 1.0, reports={"acc": 0.2}),
    ]
    assert collect.reported(records) == {"acc": 0.3, "f1": 0.5}


def test_values_land_in_measurement_columns_their_own_columns_or_are_refused():
    row, notes = {"images_per_epoch": 100}, []
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
    assert names == ["acc"] and row["acc"] == 1.0 and row["images_per_s"] == 100.0 and row["steady_epoch_s"] == 1.0
    assert row["versions_json"] == '{"x": "1"}' and "status" not in row and "blob" not in row
    assert len(notes) == 3 and "reported status not kept" in notes[0]


def test_history_final_values_and_evaluate():
    main = record(
        1,
        0.0,
        fits=[fit(8, (1.0, 1.0, 1), history={"loss": [0.9, 0.4], "val_accuracy": [0.5, 0.8]})],
        evaluates=[{"s": 0.1, "logs": {"loss": 0.3, "accuracy": 0.85}}],
    )
    values, series = collect.history([main])
    assert values == {"loss": 0.4, "val_accuracy": 0.8, "eval_loss": 0.3, "eval_accuracy": 0.85}
    assert series == {"loss": [0.9, 0.4], "val_accuracy": [0.5, 0.8]}


def test_the_earliest_error_is_the_trials():
    records = [
        record(1, 0.0, error={"type": "a.ProcessRaisedException", "at": 5.0}),
        record(2, 1.0, error={"type": "builtins.ValueError", "at": 4.0}),
    ]
    assert collect.first_error(records)["type"] == "builtins.ValueError"
