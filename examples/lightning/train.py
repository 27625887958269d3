"""A PyTorch Lightning script: a GPT-style language model (causal self-attention, AdamW) trained on
synthetic token sequences, with a validation pass every epoch.

Nothing here knows gpu-grid. Run it by hand (`python train.py --epochs 2`); the data is made in the
script (a repeating pattern under noise, so the loss falls), so it runs offline. `--size` picks
the model: `tiny` for a CPU, `small` (GPT-2 small's shape, ~124M parameters) and `medium` (GPT-2
medium's, ~355M) for a GPU. With `--precision bf16-mixed` on a GPU it trains under bf16 autocast.
"""

import argparse
import math

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {  # layers, heads, width
    "tiny": (2, 2, 64),
    "small": (12, 12, 768),
    "medium": (24, 16, 1024),
}


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPT(L.LightningModule):
    def __init__(self, vocab=1024, seq=128, size="tiny", lr=3e-4):
        super().__init__()
        self.save_hyperparameters()
        layers, heads, width = SIZES[size]
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(1, seq, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.head = nn.Linear(width, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1), persistent=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        for block in self.blocks:
            x = block(x, self.mask[: tokens.shape[1], : tokens.shape[1]])
        return self.head(x)

    def loss(self, batch):
        tokens = batch[0]
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)), logits

    def training_step(self, batch, batch_idx):
        loss, _ = self.loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits = self.loss(batch)
        acc = (logits.argmax(-1) == batch[0][:, 1:]).float().mean()
        self.log("val_loss", loss)
        self.log("val_acc", acc)
        self.log("val_ppl", math.exp(min(loss.item(), 20)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def sequences(n, seq, vocab, seed):
    """Token sequences that repeat a short random motif, with some tokens replaced by noise."""
    g = torch.Generator().manual_seed(seed)
    motifs = torch.randint(0, vocab, (n, 8), generator=g)
    tokens = motifs.repeat(1, seq // 8 + 1)[:, :seq]
    noise = torch.rand(n, seq, generator=g) < 0.1
    tokens[noise] = torch.randint(0, vocab, (int(noise.sum()),), generator=g)
    return torch.utils.data.TensorDataset(tokens)


def main():
    parser = argparse.ArgumentParser(description="a GPT-style LM in PyTorch Lightning, on synthetic tokens")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=512, help="training sequences per epoch")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--precision", default="32-true", help="Lightning's precision, e.g. bf16-mixed")
    parser.add_argument("--out", default="lightning_logs", help="where Lightning writes its checkpoints and logs")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    vocab = 1024
    train = torch.utils.data.DataLoader(
        sequences(args.samples, args.seq + 1, vocab, 0), batch_size=args.batch_size, shuffle=True
    )
    val = torch.utils.data.DataLoader(
        sequences(max(args.samples // 8, args.batch_size), args.seq + 1, vocab, 1), batch_size=args.batch_size
    )
    model = GPT(vocab=vocab, seq=args.seq, size=args.size)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        precision=args.precision,
        default_root_dir=args.out,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, train, val)
    print(f"final val_loss {trainer.callback_metrics['val_loss'].item():.4f}", flush=True)


if __name__ == "__main__":
    main()
