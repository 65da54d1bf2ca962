"""lifetimes 0.11.3 on the work of benches/btyd.rs, for README's lifecycle-model table.

    python -m venv /tmp/lt && /tmp/lt/bin/pip install lifetimes pandas scipy numpy
    /tmp/lt/bin/python benches/compare_lifetimes.py [rows]

Times (median of 3): the BG/NBD and Gamma-Gamma fits on the full CDNOW summary (78 weeks,
same-day purchases merged, as rfm_summary builds it), the summary itself, p_alive over
`rows` customers (default 10,000,000) and clv over 12 months on 1,000,000, all vectorised
NumPy inside lifetimes.
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


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
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


if __name__ == "__main__":
    main()
