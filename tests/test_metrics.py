"""`metrics:` patterns over a trial's output, and each metric's direction."""

from __future__ import annotations

import pytest

from grid.results.schema import known_goal
from grid.spec.patterns import parse_metrics
from grid.trial.output import scan


def patterns(raw):
    problems: list[str] = []
    out = parse_metrics(raw, problems)
    assert problems == []
    return out


def log(tmp_path, text: str | bytes):
    path = tmp_path / "out.log"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_last_match_wins_and_a_series_is_kept_when_it_matches_once_per_epoch(tmp_path):
    found = scan(
        log(tmp_path, "epoch 1 acc 0.5\nepoch 2 acc 0.7\nepoch 3 acc 0.9\ntest accuracy: 0.88\n"),
        0,
        patterns({"acc": r"acc ([0-9.]+)", "test_acc": r"test accuracy: ([0-9.]+)"}),
        epochs=3,
    )
    assert found.values == {"acc": 0.9, "test_acc": 0.88}
    assert found.series == {"acc": [0.5, 0.7, 0.9]} and found.notes == []


def test_no_series_when_the_count_differs_from_the_epochs(tmp_path):
    found = scan(log(tmp_path, "acc 0.5\nacc 0.6\n"), 0, patterns({"acc": r"acc ([0-9.]+)"}), epochs=3)
    assert found.values == {"acc": 0.6} and found.series == {}


def test_a_pattern_that_never_matches_leaves_null_and_a_note(tmp_path):
    found = scan(log(tmp_path, "nothing here\n"), 0, patterns({"f1": r"f1=([0-9.]+)"}), epochs=None)
    assert found.values == {"f1": None}
    assert found.notes == ["metric f1: pattern 'f1=([0-9.]+)' matched no output line"]


def test_progress_bars_text_values_named_groups_and_the_offset(tmp_path):
    text = b"old run acc 0.1\n" + b"1/3 [==>...] loss: 0.9\r2/3 [====>.] loss: 0.5\r3/3 loss: 0.3\nmodel: resnet\n"
    found = scan(
        log(tmp_path, text),
        len(b"old run acc 0.1\n"),
        patterns(
            {
                "loss": r"loss: ([0-9.]+)",
                "model": "model: (\\w+)",
                "acc": r"acc ([0-9.]+)",
                "step": r"(?P<step>\d)/3 .*loss: (?P<value>[0-9.]+)",
            }
        ),
        epochs=None,
    )
    assert found.values == {"loss": 0.3, "model": "resnet", "acc": None, "step": 0.3}


def test_epoch_times_pattern_keeps_every_match(tmp_path):
    found = scan(
        log(tmp_path, "epoch took 2.5 s\nepoch took 1.0 s\n"),
        0,
        patterns({"epoch_times": r"took ([0-9.]+) s"}),
        epochs=2,
    )
    assert found.values["epoch_times"] == [2.5, 1.0]


@pytest.mark.parametrize(
    "name, goal",
    [
        ("test_acc", "max"),
        ("val_accuracy", "max"),
        ("images_per_s", "max"),
        ("f1", "max"),
        ("eval_auc", "max"),
        ("loss", "min"),
        ("val_loss", "min"),
        ("steady_epoch_s", "min"),
        ("gpu_mem_peak_mib", "min"),
        ("mae", "min"),
        ("widgets", None),
        ("accent", None),
    ],
)
def test_known_goals(name, goal):
    assert known_goal(name) == goal
