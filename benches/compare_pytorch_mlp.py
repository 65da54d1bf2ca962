#!/usr/bin/env python3
"""PyTorch on the work of `cargo bench --bench scoring`: the 24-64-32-1 ReLU MLP of
churn_classifier (hidden = '64,32') over 24 float features.

- scoring: 10,000,000 rows in batches of 8,192 (DataFusion's batch size), eval mode and
  inference_mode, rows per second; the features are already on the device, as tenure's are
  already in memory;
- training: one epoch over 1,000,000 rows, batch 1,024, AdamW, BCE with logits, seconds.

    python benches/compare_pytorch_mlp.py [threads] [device]

threads defaults to 2 (this machine's cores), device to cpu (cuda in benches/gpu_check.sh).
"""

import sys
import time

import torch
from torch import nn


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
    print(f"torch {torch.__version__}, {threads} threads, {device}")
    model = nn.Sequential(
        nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
    ).to(device)

    rows, batch = 10_000_000, 8192
    features = torch.rand(rows, 24, device=device)
    model.eval()

    def score():
        total = torch.zeros((), device=device)
        for start in range(0, rows, batch):
            total += torch.sigmoid(model(features[start:start + batch])).sum()
        return total.item()

    with torch.inference_mode():
        score()
        seconds = best_of(3, score, device)
    print(f"score_mlp_10m_rows: {seconds:.3f} s, {rows / seconds / 1e6:.1f} M rows/s")
    del features

    rows, size = 1_000_000, 1024
    features = torch.rand(rows, 24, device=device)
    labels = (features[:, 0] + features[:, 1] > 1).float()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)
    loss_fn = nn.BCEWithLogitsLoss()

    def epoch():
        order = torch.randperm(rows, device=device)
        for start in range(0, rows, size):
            index = order[start:start + size]
            optimizer.zero_grad()
            loss = loss_fn(model(features[index]).squeeze(-1), labels[index])
            loss.backward()
            optimizer.step()

    epoch()
    seconds = best_of(3, epoch, device)
    print(f"train_mlp_1m_rows_epoch: {seconds:.2f} s")


if __name__ == "__main__":
    main()
