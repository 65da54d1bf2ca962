#!/usr/bin/env python3
"""tenure's boosted trees (model = 'gbdt') against LightGBM, side by side (README's GBDT rows).

One synthetic table of 24 float features (a nonlinear target with interactions, 5 % of one
feature missing), the same for both:
- training: 1,000,000 rows, 100 trees of 31 leaves, learning rate 0.1, no early stopping,
  2 threads; tenure trains on its 80 % split (800,000 rows), so LightGBM gets the same
  800,000 rows. Seconds, and each model's ROC AUC on 200,000 fresh rows;
- scoring: 10,000,000 rows; tenure through SQL (`SELECT sum(churn_score(...))` over a Parquet
  table, best of three) against LightGBM's predict on a numpy array, and tenure's MLP
  (hidden = '64,32') through the same SQL;
- TreeSHAP: 100,000 rows; tenure's explain() through SQL against shap's TreeExplainer on
  the LightGBM model.

    python benches/compare_gbdt.py [path/to/tenure]     # needs lightgbm, shap, pyarrow
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import lightgbm
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shap
from sklearn.metrics import roc_auc_score

FEATURES = [f"f{i}" for i in range(1, 25)]


def table(rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 24))
    logit = (
        np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + np.where(x[:, 3] > 0.5, 1.0, -0.5)
        + 0.5 * x[:, 4] ** 2 - 0.5 + 0.3 * x[:, 5:10].sum(axis=1)
    )
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    x[rng.random(rows) < 0.05, 0] = np.nan
    return x, y


def write(path, x, y=None):
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    if y is not None:
        columns["y"] = y
    pq.write_table(pa.table(columns), path)


def tenure(binary, data_dir, sql):
    started = time.perf_counter()
    out = subprocess.run(
        [binary, "--data-dir", data_dir, "sql", "--format", "csv", "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout
    return time.perf_counter() - started, out


def best_of(runs, work):
    return min(work() for _ in range(runs))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/tenure"
    work = tempfile.mkdtemp()
    data_dir = os.path.join(work, "data")
    subprocess.run([binary, "--data-dir", data_dir, "sql", "--create", "-c", "SELECT 1"],
                   check=True, capture_output=True)
    x_train, y_train = table(1_000_000, 1)
    x_test, y_test = table(200_000, 2)
    x_score, _ = table(10_000_000, 3)
    for name, x, y in [("train", x_train, y_train), ("test", x_test, y_test),
                       ("score", x_score, None)]:
        write(os.path.join(work, f"{name}.parquet"), x, y)
        tenure(binary, data_dir, f"CREATE EXTERNAL TABLE {name} STORED AS PARQUET "
                                 f"LOCATION '{os.path.join(work, name + '.parquet')}'")
    cols = ", ".join(FEATURES)

    seconds, _ = tenure(binary, data_dir,
        f"CREATE MODEL g KIND churn_classifier TARGET y OPTIONS (model = 'gbdt', trees = 100, "
        f"patience = 100, num_leaves = 31, learning_rate = 0.1) AS SELECT {cols}, y FROM train")
    _, out = tenure(binary, data_dir,
        f"SELECT value FROM model_evaluate('g', 'SELECT {cols}, y FROM test') WHERE metric = 'roc_auc'")
    tenure_auc = float(out.split()[-1])
    print(f"training, 800,000 x 24, 100 trees: tenure {seconds:.1f} s (AUC {tenure_auc:.4f})")

    rows = 800_000
    started = time.perf_counter()
    booster = lightgbm.LGBMClassifier(n_estimators=100, num_leaves=31, learning_rate=0.1,
                                      n_jobs=2, verbose=-1)
    booster.fit(x_train[:rows], y_train[:rows])
    lgb_seconds = time.perf_counter() - started
    lgb_auc = roc_auc_score(y_test, booster.predict_proba(x_test)[:, 1])
    print(f"                                     LightGBM {lgb_seconds:.1f} s (AUC {lgb_auc:.4f}), "
          f"tenure {seconds / lgb_seconds:.2f} x")

    tenure(binary, data_dir, f"CREATE MODEL mlp KIND churn_classifier TARGET y OPTIONS "
                             f"(hidden = '64,32', epochs = 1) AS SELECT {cols}, y FROM test")
    scoring = best_of(3, lambda: tenure(binary, data_dir,
        f"SELECT sum(churn_score('g', {cols})) FROM score")[0])
    features_only = best_of(3, lambda: tenure(binary, data_dir,
        f"SELECT sum({' + '.join(FEATURES)}) FROM score")[0])
    mlp = best_of(3, lambda: tenure(binary, data_dir,
        f"SELECT sum(churn_score('mlp', {cols})) FROM score")[0])
    lgb_predict = best_of(3, lambda: (lambda s: (booster.predict_proba(x_score), time.perf_counter() - s)[1])(time.perf_counter()))
    n = len(x_score)
    print(f"scoring 10,000,000 rows: tenure gbdt {scoring:.2f} s ({n / scoring / 1e6:.1f} M rows/s; "
          f"reading the features alone {features_only:.2f} s), tenure MLP {mlp:.2f} s "
          f"({n / mlp / 1e6:.1f} M rows/s), LightGBM predict {lgb_predict:.2f} s "
          f"({n / lgb_predict / 1e6:.1f} M rows/s)")

    shap_rows = 100_000
    explain, _ = tenure(binary, data_dir,
        f"SELECT sum(cardinality(explain('g', {cols}))) FROM (SELECT * FROM score LIMIT {shap_rows})")
    started = time.perf_counter()
    shap.TreeExplainer(booster.booster_).shap_values(x_score[:shap_rows])
    shap_seconds = time.perf_counter() - started
    print(f"TreeSHAP, 100,000 rows: tenure explain() {explain:.2f} s ({shap_rows / explain:,.0f} rows/s), "
          f"shap TreeExplainer {shap_seconds:.2f} s ({shap_rows / shap_seconds:,.0f} rows/s)")
    print(json.dumps({"train_s": seconds, "lightgbm_train_s": lgb_seconds, "auc": tenure_auc,
                      "lightgbm_auc": lgb_auc, "score_s": scoring, "mlp_score_s": mlp,
                      "lightgbm_predict_s": lgb_predict, "explain_s": explain,
                      "shap_s": shap_seconds}))


if __name__ == "__main__":
    main()
