"""The baselines tenure's default classifier is compared with on tests/data/real.

For each table: scikit-learn's LogisticRegression (numbers standardised, missing numbers
imputed with the median, text one-hot encoded) and LightGBM's defaults (text as pandas
categories, missing values native), trained on split = 'train' and measured on
split = 'test'. Prints one JSON object per table:
{"table", "target", "logistic_auc", "logistic_accuracy", "lightgbm_auc", "lightgbm_accuracy",
 "lightgbm_seconds"}.

    python benches/real_data/baselines.py [tests/data/real]
"""

import json
import sys
import time

import lightgbm
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TARGETS = {"wa_churn": "churn", "mlc_churn": "churn", "credit_data": "status"}


def main(folder="tests/data/real"):
    for table, target in TARGETS.items():
        frame = pd.read_csv(f"{folder}/{table}.csv")
        features = [c for c in frame.columns if c not in (target, "split")]
        text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        numbers = [c for c in features if c not in text]
        train, test = frame[frame.split == "train"], frame[frame.split == "test"]
        y_train, y_test = train[target].astype(bool), test[target].astype(bool)

        logistic = make_pipeline(
            ColumnTransformer(
                [
                    ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
                    ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                           OneHotEncoder(handle_unknown="ignore")), text),
                ]
            ),
            LogisticRegression(max_iter=5000),
        )
        logistic.fit(train[features], y_train)
        p_logistic = logistic.predict_proba(test[features])[:, 1]

        def categories(part):
            part = part[features].copy()
            for c in text:
                part[c] = pd.Categorical(part[c], categories=sorted(frame[c].dropna().unique()))
            return part

        started = time.perf_counter()
        booster = lightgbm.LGBMClassifier(verbose=-1, n_jobs=2)
        booster.fit(categories(train), y_train)
        seconds = time.perf_counter() - started
        p_booster = booster.predict_proba(categories(test))[:, 1]

        print(json.dumps({
            "table": table,
            "target": target,
            "logistic_auc": roc_auc_score(y_test, p_logistic),
            "logistic_accuracy": accuracy_score(y_test, p_logistic >= 0.5),
            "lightgbm_auc": roc_auc_score(y_test, p_booster),
            "lightgbm_accuracy": accuracy_score(y_test, p_booster >= 0.5),
            "lightgbm_seconds": seconds,
        }))


if __name__ == "__main__":
    main(*sys.argv[1:])
