"""lifetimes, scikit-learn and implicit on the work of benches/customer_models.rs, for
README's customer-model tables.

    python -m venv /tmp/py && /tmp/py/bin/pip install lifetimes scikit-learn implicit
    /tmp/py/bin/python benches/compare_python.py [rows] [btyd] [kmeans] [recommender]

Times (median of 3): the BG/NBD and Gamma-Gamma fits on the full CDNOW summary (78 weeks,
same-day purchases merged, as rfm_summary builds it), the summary itself, p_alive over
`rows` customers (default 10,000,000) and clv over 12 months on 1,000,000, all vectorised
NumPy inside lifetimes; scikit-learn's KMeans (Lloyd, k-means++, one init) with 1 and 21
iterations on 1,000,000 x 8 uniform rows; implicit's ALS (32 factors, 15 iterations) on the
same 2,000,000 interactions as the Rust benchmark and recommend() for all 100,000 users.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(f, runs=3):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def customers(rows, seed=7):
    rng = np.random.default_rng(seed)
    t = rng.uniform(1.0, 78.0, rows)
    x = np.where(rng.random(rows) < 0.5, 0, rng.integers(1, 20, rows))
    r = np.where(x == 0, 0.0, rng.uniform(0.0, 1.0, rows) * t)
    m = np.where(x == 0, 0.0, rng.uniform(5.0, 200.0, rows))
    return pd.Series(x), pd.Series(r), pd.Series(t), pd.Series(m)


def btyd(rows):
    tx = pd.read_csv(ROOT / "tests/data/cdnow/cdnow_master.csv", parse_dates=["date"])

    def summarise():
        s = summary_data_from_transaction_data(
            tx, "customer_id", "date", monetary_value_col="dollars",
            observation_period_end="1998-06-30", freq="D")
        s["recency"] /= 7
        s["T"] /= 7
        return s

    print(f"rfm summary (69,659 transactions): {median_seconds(summarise):.3f} s")
    s = summarise()
    s = s[(s.frequency == 0) | (s.monetary_value > 0)]
    bg = BetaGeoFitter()
    fit = lambda: bg.fit(s.frequency, s.recency, s["T"])
    print(f"BG/NBD fit ({len(s)} customers): {median_seconds(fit):.3f} s  {bg.params_.to_dict()}")
    repeat = s[s.frequency > 0]
    gg = GammaGammaFitter()
    fit = lambda: gg.fit(repeat.frequency, repeat.monetary_value)
    print(f"Gamma-Gamma fit ({len(repeat)} customers): {median_seconds(fit):.3f} s  {gg.params_.to_dict()}")

    x, r, t, m = customers(rows)
    seconds = median_seconds(lambda: bg.conditional_probability_alive(x, r, t).sum())
    print(f"p_alive over {rows:,} rows: {seconds:.3f} s = {rows / seconds / 1e6:.1f} M rows/s")
    x, r, t, m = customers(1_000_000)
    bg.predict = bg.conditional_expected_number_of_purchases_up_to_time
    seconds = median_seconds(
        lambda: gg.customer_lifetime_value(bg, x, r, t, m, time=12, discount_rate=0.01, freq="W").sum())
    print(f"clv 12 months over 1,000,000 rows: {seconds:.3f} s = {1e6 / seconds / 1e6:.2f} M rows/s")


def kmeans():
    from sklearn.cluster import KMeans

    x = np.random.default_rng(11).random((1_000_000, 8))
    times = {}
    for iterations in (1, 21):
        fit = lambda: KMeans(n_clusters=8, init="k-means++", n_init=1, max_iter=iterations,
                             tol=0.0, algorithm="lloyd", random_state=0).fit(x)
        times[iterations] = median_seconds(fit)
        print(f"k-means 1M x 8, k = 8, {iterations} iterations: {times[iterations]:.3f} s")
    print(f"k-means seconds per iteration: {(times[21] - times[1]) / 20:.4f}")


def recommender():
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    users = np.repeat(np.arange(100_000), 20)
    j = np.tile(np.arange(20), 100_000)
    items = ((users % 50) * 97 + (users * 7919 + j * 104_729) % 500) % 5000
    m = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(100_000, 5000))
    m.data[:] = 1.0
    model = AlternatingLeastSquares(factors=32, iterations=15, regularization=0.05, alpha=1.0,
                                    random_state=0)
    print(f"ALS train, 100k users, {m.nnz} interactions: "
          f"{median_seconds(lambda: model.fit(m, show_progress=False)):.3f} s")
    every = np.arange(100_000)
    seconds = median_seconds(lambda: model.recommend(every, m, N=10, filter_already_liked_items=True))
    print(f"recommend 10 for all 100k users: {seconds:.3f} s")


def main():
    """Arguments: an optional row count for p_alive, then which parts to run (btyd, kmeans,
    recommender; all by default)."""
    args = sys.argv[1:]
    rows = int(args.pop(0)) if args and args[0].isdigit() else 10_000_000
    parts = set(args) or {"btyd", "kmeans", "recommender"}
    if "btyd" in parts:
        btyd(rows)
    if "kmeans" in parts:
        kmeans()
    if "recommender" in parts:
        recommender()


if __name__ == "__main__":
    main()
