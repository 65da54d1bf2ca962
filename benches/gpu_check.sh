#!/usr/bin/env bash
# The GPU check of a `--features cuda` build, run on a machine with an NVIDIA GPU:
#
#   benches/gpu_check.sh TENURE_BINARY [OUT_DIR]
#
# It trains and scores through SQL with `--device cuda:0` (tenure.toml's `device`), against
# the same work on the CPU and PyTorch on the same GPU:
#   1. a device that does not exist gives a clear error;
#   2. PyTorch's figures (benches/compare_pytorch_mlp.py, compare_pytorch_sequence.py);
#   3. churn_classifier (24-64-32-1 MLP) on 1,000,000 rows: seconds per epoch, and
#      scoring 10,000,000 rows with churn_score() on the GPU and on the CPU (a table: a
#      CROSS JOIN with generate_series to multiply rows is far slower than the scoring);
#   4. KIND sequence scoring over the demo world's event histories, GPU and CPU;
#   5. benches/sequence_quality.sql on the GPU: held-out ROC AUC and training seconds, to
#      set beside README's CPU figures.
# Every step runs even when an earlier one fails; the log is OUT_DIR/gpu_check.log.
# DEVICE=cpu SCALE=0.02 TRAIN_ROWS=20000 SCORE_ROWS=100000 run the same steps on a machine
# without a GPU (a dry run).
set -u
BIN=$(realpath "$1")
OUT=${2:-gpu-out}
DEVICE=${DEVICE:-cuda:0}
SCALE=${SCALE:-0.2}
TRAIN_ROWS=${TRAIN_ROWS:-1000000}
SCORE_ROWS=${SCORE_ROWS:-10000000}
THREADS=${THREADS:-$(nproc)}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
DATA=$(mktemp -d)
cd "$(dirname "$0")/.."

step() {
    echo "=== $1 ($(date +%T))" | tee -a "$LOG"
}
# tenure with the data directory; stdout and stderr (NOTICEs, errors) go to the log.
tenure() {
    "$BIN" --data-dir "$DATA" "$@" 2>&1 | tee -a "$LOG"
}

step "machine"
{ nvidia-smi -L; nproc; "$BIN" --version; } 2>&1 | tee -a "$LOG"

step "a device that does not exist"
tenure --device cuda:7 sql -c "SELECT 1"

step "PyTorch, $DEVICE"
torch_device=${DEVICE%%:*}
python3 benches/compare_pytorch_mlp.py "$THREADS" "$torch_device" 2>&1 | tee -a "$LOG"
python3 benches/compare_pytorch_sequence.py "$THREADS" "$torch_device" 2>&1 | tee -a "$LOG"

step "demo world, scale $SCALE"
tenure demo --scale "$SCALE"

step "churn_classifier on $TRAIN_ROWS of $SCORE_ROWS rows, $DEVICE"
features=$(for i in $(seq 1 24); do printf 'random() AS f%d, ' "$i"; done)
names=$(seq -s ', ' -f 'f%g' 1 24)
tenure sql --timing -c "CREATE TABLE mlp AS SELECT ${features} random() AS noise
    FROM generate_series(1, $SCORE_ROWS)" \
    -c "CREATE TABLE mlp_labelled AS SELECT ${names}, f1 + f2 + 0.3 * noise > 1.15 AS churned
        FROM mlp"
tenure --device "$DEVICE" sql --timing -c "CREATE MODEL mlp KIND churn_classifier TARGET churned
    OPTIONS (hidden = '64,32', epochs = 3, patience = 3, batch_size = 1024, seed = 1)
    AS SELECT * FROM mlp_labelled LIMIT $TRAIN_ROWS"
for device in "$DEVICE" cpu; do
    step "scoring $SCORE_ROWS rows with churn_score, $device"
    tenure --device "$device" sql --timing \
        -c "SELECT sum(churn_score('mlp', ${names})) FROM mlp_labelled" \
        -c "SELECT sum(churn_score('mlp', ${names})) FROM mlp_labelled" \
        -c "SELECT sum(churn_score('mlp', ${names})) FROM mlp_labelled"
done

step "KIND sequence, transformer and LSTM, 3 epochs, $DEVICE"
for architecture in transformer lstm; do
    tenure --device "$DEVICE" sql --timing -c "CREATE MODEL seq_$architecture KIND sequence
        TARGET churned OPTIONS (architecture = '$architecture', epochs = 3, patience = 3, seed = 1)
        AS SELECT s.events, s.ages, f.churned
           FROM customer_event_sequences s JOIN churn_features f USING (customer_id)"
    for device in "$DEVICE" cpu; do
        step "scoring every history with the $architecture, $device"
        score="SELECT count(*), sum(churn_score('seq_$architecture', events, ages))
            FROM customer_event_sequences"
        tenure --device "$device" sql --timing -c "$score" -c "$score" -c "$score"
    done
done

step "benches/sequence_quality.sql, $DEVICE"
timeout "${QUALITY_TIMEOUT:-240}" "$BIN" --data-dir "$DATA" --device "$DEVICE" sql --timing \
    -f benches/sequence_quality.sql 2>&1 | tee -a "$LOG"

step "done"
rm -rf "$DATA"
