#!/usr/bin/env bash
# uplift_score against the classifier it is built from, through SQL (README's uplift row).
#
#   benches/uplift_scoring.sh            # TENURE=path/to/tenure ROWS=N to change either
#
# Trains, on 50,000 random rows of 8 features, KIND uplift models (two_model: two 8-64-32-1
# MLPs; class_transform: one) and a churn_classifier of the same shape, then times queries
# over ROWS rows (default 10,000,000) whose features are computed from generate_series: the
# features alone, the classifier's score and each uplift score, summed so nothing is sent
# back. Prints each
# query's best of five runs and the scoring throughput net of computing the features.
set -euo pipefail
TENURE=${TENURE:-target/release/tenure}
ROWS=${ROWS:-10000000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$TENURE" --data-dir "$DIR/data" sql --create -c "SELECT 1" >/dev/null
sql() {
    "$TENURE" --data-dir "$DIR/data" sql -c "$1" >/dev/null 2>"$DIR/stderr" || { cat "$DIR/stderr"; exit 1; }
}

FEATURES="f1, f2, f3, f4, f5, f6, f7, f8"
# Eight features from the row number, cheap to compute and spread over [-1, 1].
GENERATED="sin(value * 0.1) AS f1, cos(value * 0.7) AS f2, sin(value * 1.3) AS f3, cos(value * 1.9) AS f4, sin(value * 2.3) AS f5, cos(value * 2.9) AS f6, sin(value * 3.1) AS f7, cos(value * 3.7) AS f8"
sql "CREATE TABLE train AS SELECT $GENERATED, random() < 0.5 AS treated, random() < 0.3 AS y FROM generate_series(1, 50000)"
sql "CREATE MODEL classifier KIND churn_classifier TARGET y OPTIONS (hidden = '64,32', epochs = 2) AS SELECT $FEATURES, y FROM train"
sql "CREATE MODEL coupon KIND uplift TARGET y TREATMENT treated OPTIONS (hidden = '64,32', epochs = 2) AS SELECT $FEATURES, treated, y FROM train"
sql "CREATE MODEL transformed KIND uplift TARGET y TREATMENT treated OPTIONS (hidden = '64,32', epochs = 2, estimator = 'class_transform') AS SELECT $FEATURES, treated, y FROM train"

best_of_five() {
    local best=""
    for _ in 1 2 3 4 5; do
        local start end
        start=$(date +%s.%N)
        sql "$1"
        end=$(date +%s.%N)
        best=$(echo "$start $end $best" | awk '{t = $2 - $1; if ($3 == "" || t < $3) print t; else print $3}')
    done
    echo "$best"
}
FROM="FROM (SELECT $GENERATED FROM generate_series(1, $ROWS))"
features=$(best_of_five "SELECT sum(f1 + f2 + f3 + f4 + f5 + f6 + f7 + f8) $FROM")
classifier=$(best_of_five "SELECT sum(churn_score('classifier', $FEATURES)) $FROM")
uplift=$(best_of_five "SELECT sum(uplift_score('coupon', $FEATURES)) $FROM")
transformed=$(best_of_five "SELECT sum(uplift_score('transformed', $FEATURES)) $FROM")
awk -v rows="$ROWS" -v f="$features" -v c="$classifier" -v u="$uplift" -v t="$transformed" 'BEGIN {
    printf "rows %d\nfeatures alone                  %.2f s\n", rows, f
    printf "churn_score                     %.2f s (%.1f M rows/s net of the features)\n", c, rows / (c - f) / 1e6
    printf "uplift_score, two_model         %.2f s (%.1f M rows/s; %.2f x the classifier)\n", u, rows / (u - f) / 1e6, (u - f) / (c - f)
    printf "uplift_score, class_transform   %.2f s (%.1f M rows/s; %.2f x the classifier)\n", t, rows / (t - f) / 1e6, (t - f) / (c - f)
}'
