#!/usr/bin/env python3
"""PyTorch on the work of `cargo bench --bench customer_models -- sequence/`.

The same networks as tenure's KIND sequence (models/src/sequence.rs): token + position + age
bucket + gap bucket embeddings (d_model 64), 2 pre-LN Transformer encoder layers (4 heads,
ReLU feed-forward of 256, dropout 0.1) and a final layer norm, or a 2-layer LSTM; a linear
churn head on the summary token that closes each sequence. Measured:

- scoring 1,024 histories of exactly 50 and 200 events (eval mode, inference_mode, with the
  padding mask tenure also applies), sequences per second;
- one training epoch (batch 128, AdamW, BCE with logits) over 2,027 histories of 50 events,
  tokens per second (events plus the summary token).

PyTorch's figures cover the forward and backward passes only; tenure's also include turning
the event lists into ids and time buckets. Threads: torch.set_num_threads(N) with N the
first argument (default 2, this machine's cores); the second argument is the device (default
cpu; cuda for the GPU check in benches/gpu_check.sh).

    python benches/compare_pytorch_sequence.py [threads] [device]
"""

import sys
import time

import torch
from torch import nn

D_MODEL, HEADS, LAYERS, MAX_LEN, VOCAB, BUCKETS = 64, 4, 2, 200, 54, 44


class Sequence(nn.Module):
    def __init__(self, architecture):
        super().__init__()
        self.architecture = architecture
        self.token = nn.Embedding(VOCAB, D_MODEL)
        self.age = nn.Embedding(BUCKETS, D_MODEL)
        self.gap = nn.Embedding(BUCKETS, D_MODEL)
        self.dropout = nn.Dropout(0.1)
        if architecture == "transformer":
            self.position = nn.Embedding(MAX_LEN + 1, D_MODEL)
            layer = nn.TransformerEncoderLayer(
                D_MODEL, HEADS, 4 * D_MODEL, 0.1, activation="relu", batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.final = nn.LayerNorm(D_MODEL)
        else:
            self.lstm = nn.LSTM(D_MODEL, D_MODEL, LAYERS, batch_first=True, dropout=0.1)
        self.head = nn.Linear(D_MODEL, 1)

    def forward(self, tokens, positions, ages, gaps, padding):
        x = self.token(tokens) + self.age(ages) + self.gap(gaps)
        if self.architecture == "transformer":
            x = x + self.position(positions)
            x = self.encoder(self.dropout(x), src_key_padding_mask=padding)
            x = self.final(x)[:, -1]
        else:
            x = self.lstm(self.dropout(x))[0][:, -1]
        return self.head(self.dropout(x)).squeeze(-1)


def batch(rows, length, generator):
    steps = length + 1
    tokens = torch.randint(4, VOCAB, (rows, steps), generator=generator)
    tokens[:, -1] = 2
    positions = torch.arange(steps - 1, -1, -1).expand(rows, steps)
    ages = torch.randint(0, BUCKETS, (rows, steps), generator=generator)
    gaps = torch.randint(0, BUCKETS, (rows, steps), generator=generator)
    padding = torch.zeros(rows, steps, dtype=torch.bool)
    return tokens, positions, ages, gaps, padding


def best_of(runs, work, device):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    device = torch.device(sys.argv[2] if len(sys.argv) > 2 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(2)
    print(f"torch {torch.__version__}, {threads} threads, {device}")
    for architecture in ["transformer", "lstm"]:
        model = Sequence(architecture).to(device).eval()
        for length in [50, 200]:
            inputs = [t.to(device) for t in batch(1024, length, generator)]
            with torch.inference_mode():
                model(*inputs)
                seconds = best_of(5, lambda: model(*inputs), device)
            print(f"score_{architecture}_len{length}_batch1024: {seconds * 1000:.1f} ms, "
                  f"{1024 / seconds:,.0f} sequences/s")

    model = Sequence("transformer").to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)
    loss_fn = nn.BCEWithLogitsLoss()
    rows, length, size = 2027, 50, 128
    data = [t.to(device) for t in batch(rows, length, generator)]
    labels = torch.randint(0, 2, (rows,), generator=generator).float().to(device)

    def epoch():
        order = torch.randperm(rows).to(device)
        for start in range(0, rows, size):
            index = order[start:start + size]
            optimizer.zero_grad()
            loss = loss_fn(model(*(t[index] for t in data)), labels[index])
            loss.backward()
            optimizer.step()

    epoch()
    seconds = best_of(3, epoch, device)
    tokens = rows * (length + 1)
    print(f"train_transformer_len50_epoch: {seconds:.2f} s, {tokens / seconds:,.0f} tokens/s")


if __name__ == "__main__":
    main()
