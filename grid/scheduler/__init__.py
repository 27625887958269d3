"""Trials to workers: the driver loop (driver, resume), the pools of pinned workers (pool: local
threads; raypool and worker: one Ray actor per GPU), live progress, and `grid run` end to end (sweep)."""
