#!/usr/bin/env bash
# The engine and PyTorch train the same model on the same synthetic 512×512 files with the same
# recipe (bench/reference/train_synth.py), plus the loader's pairs/s on this machine's CPU:
#   . .gpu/enter.sh && bash bench/gpu_train_compare.sh "$OUT"
# Env: MODEL (tinycd), ITERS (1000), PAIRS (train pairs, 2000), VAL_EVERY (250), SEEDS ("0"),
# DATA (/tmp/cd-synth512)
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
model=${MODEL:-tinycd}; iters=${ITERS:-1000}; pairs=${PAIRS:-2000}; every=${VAL_EVERY:-250}
data=${DATA:-/tmp/cd-synth512}
export PYTHONUNBUFFERED=1 NO_COLOR=1
t0=$SECONDS
deno run -A cli/synth.ts --out "$data" --pairs $((pairs + 100)) --size 512 --val 100 --test 0 \
  --quiet --overwrite || exit 1
echo "synth: $((SECONDS - t0)) s"
deno run -A bench/loader_rate.ts "$data" | tee "$out/loader.jsonl"
for seed in ${SEEDS:-0}; do
  run="/tmp/cd-run-$model-$seed"; rm -rf "$run"
  t0=$SECONDS
  deno run -A cli/train.ts --model "$model" --data "$data" --out "$run" --iters "$iters" --batch 8 \
    --val-every "$every" --log-every 50 --seed "$seed" > "$out/engine_train_$seed.txt" 2>&1
  echo "engine train, seed $seed: $((SECONDS - t0)) s, exit $?"
  cp "$run/log.jsonl" "$out/engine_log_$seed.jsonl"
  grep '"val"' "$out/engine_log_$seed.jsonl" | cut -c1-60
  t0=$SECONDS
  python3 bench/reference/train_synth.py --data "$data" --model "$model" --iters "$iters" \
    --val-every "$every" --seed "$seed" | tee "$out/torch_log_$seed.jsonl" | grep -v '"train"'
  echo "pytorch train, seed $seed: $((SECONDS - t0)) s"
done
