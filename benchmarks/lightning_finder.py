"""Lightning's own answer to "what is the largest batch that fits?", for comparison with gpu-grid's
search: `Tuner.scale_batch_size` on the Lightning example's GPT (examples/lightning/train.py), in
this one process, timed.

    python benchmarks/lightning_finder.py --size medium --seq 1024 --precision bf16-mixed [--mode binsearch]

Prints one JSON line: the batch size Lightning settles on (after its own margin), the seconds the
finder took (model built before the clock starts, as a user's script would have it), the mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "lightning"))
from train import GPT, sequences


class Tunable(GPT):
    """The example's module with what Lightning's finder needs: a batch_size it can change and the
    dataloaders built from it."""

    def __init__(self, batch_size: int, samples: int, **kwargs):
        super().__init__(**kwargs)
        self.batch_size, self.samples = batch_size, samples

    def train_dataloader(self):
        data = sequences(self.samples, self.hparams.seq + 1, self.hparams.vocab, 0)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        data = sequences(max(self.samples // 8, self.batch_size), self.hparams.seq + 1, self.hparams.vocab, 1)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--mode", default="binsearch", choices=("binsearch", "power"))
    parser.add_argument("--init", type=int, default=2, help="the finder's first batch size")
    parser.add_argument("--max-trials", type=int, default=25, help="the finder's own limit (its default)")
    args = parser.parse_args()
    L.seed_everything(0, verbose=False)
    model = Tunable(args.init, args.samples, vocab=1024, seq=args.seq, size=args.size)
    trainer = L.Trainer(
        max_epochs=1,
        precision=args.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    tuner = L.pytorch.tuner.Tuner(trainer)
    t0 = time.perf_counter()
    found = tuner.scale_batch_size(model, mode=args.mode, init_val=args.init, max_trials=args.max_trials)
    seconds = time.perf_counter() - t0
    print(json.dumps({"finder": f"lightning {args.mode}", "answer": found, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
