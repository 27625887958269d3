"""A trial's measurements: the records its processes left (tasks/site/gridtrial/record.py), merged
into the row's columns, with what the trial reported on top.

- Epochs come from the primary process: the one that ran Keras `fit` (rank 0 of several), else
  `predict` passes (an inference trial). The first epoch of each `fit` call includes compiling;
  the steady epoch is the median of the others; images/s is steps x batch over the epoch's
  training time (validation excluded).
- Memory caps, framework peaks and versions come from every process that imported the framework
  (DDP ranks each cap and count their own device).
- Reported values (`gridtrial.report`, a function's return, `metrics:` patterns, History) set a
  measurement column of their name, or become a column of their own.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Set as AbstractSet
from typing import Any

import pyarrow as pa

from grid.results.schema import BY_NAME, REPORTABLE, REPORTED_AS_JSON
from grid.trial import compilecache

FRAMEWORKS = ("tensorflow", "jax", "torch", "mxnet")
DEFAULT_CAP = "none (framework default)"
FORKED_RANK = "a rank forked from the warm launcher"  # a record's started_as (tasks/site/gridtrial/ranks.py)


def read_records(folder: str) -> list[dict[str, Any]]:
    """Every process's record, oldest first; a file that is not whole JSON is skipped."""
    out = []
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(folder, name)) as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("started") or 0)


def _keras_active(record: dict) -> bool:
    return bool(record.get("fits") or record.get("predicts") or record.get("evaluates"))


def primary(records: list[dict]) -> dict | None:
    """The process whose epochs are the trial's: Keras activity, rank 0 first, then the oldest."""
    if not records:
        return None
    active = [r for r in records if _keras_active(r)] or records
    return min(
        active,
        key=lambda r: (r.get("rank") not in (None, "0"), r.get("local_rank") not in (None, "0"), r.get("started") or 0),
    )


def summary(times: list[float], images_per_epoch: int | None) -> dict[str, Any]:
    """First epoch (includes compilation) apart from the median of the steady ones."""
    if not times:
        return {}
    steady = statistics.median(times[1:]) if len(times) > 1 else None
    basis = steady if steady else times[0]
    return {
        "epoch_times": [float(t) for t in times],
        "first_epoch_s": float(times[0]),
        "steady_epoch_s": None if steady is None else float(steady),
        "images_per_s": float(images_per_epoch / basis) if images_per_epoch and basis else None,
        "images_per_epoch": images_per_epoch,
    }


def keras_epochs(record: dict) -> tuple[list[dict], int | None, str | None]:
    """(epochs, the global batch, where the batch figure came from) of a process's fits, else predicts."""
    epochs: list[dict] = []
    batch = source = None
    for fit in record.get("fits") or []:
        batch, source = fit.get("batch_size"), fit.get("batch_source")
        for i, e in enumerate(fit.get("epochs") or []):
            images = e["steps"] * batch if e.get("steps") is not None and batch else None
            epochs.append(
                {
                    "s": e["s"],
                    "train_s": e.get("train_s") or e["s"],
                    "images": images,
                    "first": i == 0,
                    "end": e.get("end"),
                }
            )
    if epochs:
        return epochs, batch, source
    for i, p in enumerate(record.get("predicts") or []):
        batch, source = p.get("batch_size"), p.get("batch_source")
        epochs.append({"s": p["s"], "train_s": p["s"], "images": p.get("images"), "first": i == 0})
    return epochs, batch, source


def epoch_fields(epochs: list[dict]) -> dict[str, Any]:
    if not epochs:
        return {}
    times = [e["s"] for e in epochs]
    steady = [e for e in epochs if not e["first"]]
    rates = [e["images"] / e["train_s"] for e in (steady or epochs[:1]) if e["images"] and e["train_s"] > 0]
    return {
        "epoch_times": times,
        "first_epoch_s": times[0],
        "steady_epoch_s": statistics.median(e["s"] for e in steady) if steady else None,
        "images_per_s": statistics.median(rates) if rates else None,
        "images_per_epoch": epochs[-1]["images"],
    }


def _framework(records: list[dict], backend: str | None) -> str | None:
    imported = [f for f in FRAMEWORKS if any(f in (r.get("versions") or {}) for r in records)]
    if backend in imported:
        return backend
    return imported[0] if len(imported) == 1 else None


def cap_method(records: list[dict], framework: str) -> str | None:
    """What the cap meant, from every process that imported the framework; processes where the
    framework never started on a GPU do not count when others did."""
    methods = [r["caps"][framework] for r in records if framework in (r.get("caps") or {})]
    started = [m for m in methods if "did not start" not in m]
    methods = started or methods
    if not methods:
        return None
    distinct = list(dict.fromkeys(methods))
    if len(distinct) > 1:
        return "; ".join(distinct)
    if len(methods) == 1 or distinct[0] == DEFAULT_CAP:
        return distinct[0]
    return f"{distinct[0]}, in each of {len(methods)} processes"


def memory_fields(records: list[dict], framework: str) -> dict[str, Any]:
    counted = [(r["pid"], r["memory"][framework]) for r in records if framework in (r.get("memory") or {})]
    if not counted:
        return {}
    peaks = [m["peak_mib"] for _, m in counted if m.get("peak_mib") is not None]
    detail = counted[0][1]["detail"] if len(counted) == 1 else {str(pid): m["detail"] for pid, m in counted}
    return {
        "framework_peak_mib": sum(peaks) if peaks else None,
        "framework_mem_json": json.dumps(detail, sort_keys=True),
    }


def steady_spans(records: list[dict]) -> list[tuple[float, float, int]]:
    """(start, end, images) in wall-clock time of each steady epoch (not the first of a fit) of
    the process that trained, where its epochs carry their end time (Keras fits)."""
    main = primary(records)
    epochs = keras_epochs(main)[0] if main is not None else []
    return [
        (e["end"] - e["s"], e["end"], e["images"])
        for e in epochs
        if not e["first"] and e.get("end") is not None and e.get("images")
    ]


def measurements(records: list[dict], config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Row fields from the records alone, and notes on how they were obtained."""
    main = primary(records)
    compiled = compilecache.first_epoch_state(main, config)
    if main is None:
        return {"processes": 0, **compiled}, []
    notes: list[str] = []
    epochs, batch, source = keras_epochs(main)
    fields: dict[str, Any] = {
        "processes": len(records),
        "fit_calls": len(main.get("fits") or []),
        "import_s": main.get("import_s"),
        **epoch_fields(epochs),
        **compiled,
    }
    if batch:
        fields["global_batch"] = batch
    if epochs and batch and source and source != "the call's batch_size":
        notes.append(f"images/s counts batches of {batch}: {source}")
    if epochs and fields.get("images_per_s") is None:
        notes.append(f"images/s unknown: the batch size is {source or 'unknown'}")
    forked = sum(1 for r in records if r.get("started_as") == FORKED_RANK)
    if forked:
        notes.append(f"torchrun's {forked} ranks forked from the warm launcher")
    versions: dict[str, Any] = {}
    for record in [main, *records]:
        versions.update({k: v for k, v in (record.get("versions") or {}).items() if k not in versions})
    if versions:
        fields["versions_json"] = json.dumps(versions, sort_keys=True)
    framework = _framework(records, config.get("backend"))
    if framework:
        fields.update(
            framework=framework,
            framework_version=versions.get(framework),
            memory_cap_method=cap_method(records, framework),
            **memory_fields(records, framework),
        )
    return fields, notes


def history(records: list[dict]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Final History values (and their per-epoch series) of the primary's last fit, and its last
    standalone `evaluate` as eval_<name>."""
    main = primary(records)
    values: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    if main is None:
        return values, series
    fits = main.get("fits") or []
    if fits:
        for name, per_epoch in (fits[-1].get("history") or {}).items():
            if per_epoch:
                values[name] = per_epoch[-1]
                series[name] = per_epoch
    evaluates = main.get("evaluates") or []
    if evaluates:
        values.update({f"eval_{k}": v for k, v in (evaluates[-1].get("logs") or {}).items()})
    return values, series


def reported(records: list[dict]) -> dict[str, Any]:
    """Explicit reports of every process (a later process wins a name), then a function's return."""
    out: dict[str, Any] = {}
    for record in records:
        out.update(record.get("reports") or {})
    for record in records:
        out.update(record.get("returned") or {})
    return out


def first_error(records: list[dict]) -> dict[str, Any] | None:
    errors = [r["error"] for r in records if r.get("error")]
    return min(errors, key=lambda e: e.get("at") or 0) if errors else None


def _column_value(value: Any) -> Any:
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def _measured_value(name: str, value: Any, notes: list[str]) -> Any:
    """A reported value in its measurement column's type (6000.0 images -> 6000)."""
    kind = BY_NAME[name].type
    try:
        if pa.types.is_integer(kind):
            return int(value)
        if pa.types.is_list(kind):
            return [float(v) for v in value]
        if pa.types.is_string(kind):
            return str(value)
        return float(value)
    except (TypeError, ValueError):
        notes.append(
            f"reported {name}={value!r} not kept: not {'a count' if pa.types.is_integer(kind) else 'a number'}"
        )
        return None


def apply_values(row: dict[str, Any], values: dict[str, Any], taken: AbstractSet[str], notes: list[str]) -> list[str]:
    """Put reported values into the row; returns the names that became metric columns.

    A measurement column of that name takes it; names of other columns (`taken`: the row's own and
    the config's) are refused with a note; anything else becomes a column of its own."""
    metrics = []
    for name, value in values.items():
        if name in REPORTED_AS_JSON and isinstance(value, dict):
            row[REPORTED_AS_JSON[name]] = json.dumps(value, sort_keys=True, default=str)
        elif name in REPORTABLE:
            if value is not None:  # a pattern that never matched leaves the measurement alone
                row[name] = _measured_value(name, value, notes)
        elif name in taken:
            notes.append(f"reported {name} not kept: it is the name of a config or bookkeeping column")
        elif _column_value(value) is None and value is not None:
            notes.append(
                f"reported {name} not kept: {type(value).__name__} is not a number, text, "
                f"true/false or a list of numbers"
            )
        else:
            row[name] = _column_value(value)
            metrics.append(name)
    if "epoch_times" in values and isinstance(values["epoch_times"], list):
        derived = summary(values["epoch_times"], row.get("images_per_epoch"))
        row.update({k: v for k, v in derived.items() if values.get(k) is None})
    return metrics
