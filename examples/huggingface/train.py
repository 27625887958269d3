"""A Hugging Face `Trainer` script: a small BERT, built from a config (no download), fine-tuned to
classify synthetic token sequences, evaluated every epoch.

Nothing here knows gpu-grid. Run it by hand (`python train.py --epochs 2`); the data is made in the
script (the label is whether a marker token appears), so it runs offline.
"""

import argparse

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments


class Marked(torch.utils.data.Dataset):
    """Sequences of random tokens; label 1 when the marker token 7 is in them."""

    def __init__(self, n, seq, vocab, seed):
        g = np.random.default_rng(seed)
        self.ids = g.integers(8, vocab, size=(n, seq))
        self.labels = g.integers(0, 2, size=n)
        where = g.integers(1, seq, size=n)
        self.ids[self.labels == 1, where[self.labels == 1]] = 7

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": torch.tensor(self.ids[i]),
            "attention_mask": torch.ones(self.ids.shape[1], dtype=torch.long),
            "labels": torch.tensor(int(self.labels[i])),
        }


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def main():
    parser = argparse.ArgumentParser(description="a small BERT fine-tuned with the Hugging Face Trainer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--out", default="hf-out", help="the Trainer's output_dir (checkpoints)")
    args = parser.parse_args()

    vocab = 2048
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=128,
        num_hidden_layers=args.layers,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=args.seq,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    training = TrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=5e-4,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=Marked(args.samples, args.seq, vocab, 0),
        eval_dataset=Marked(max(args.samples // 4, 32), args.seq, vocab, 1),
        compute_metrics=accuracy,
    )
    trainer.train()
    print(f"final eval_accuracy {trainer.evaluate()['eval_accuracy']:.3f}", flush=True)


if __name__ == "__main__":
    main()
