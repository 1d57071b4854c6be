#!/usr/bin/env bash
# The planner experiments against the default plans on the GPU machine, one call: each variant's
# training step and inference for every model (bench/gpu_train_step.ts, all models in one
# process per variant), then the fused F(4×4) kernel per layer beside F(2×2) and F(4×4) around
# the GEMM (bench/gpu_winograd4.ts, layers of at most MAX_CHANNELS channels each way):
#   . .gpu/enter.sh && bash bench/gpu_planner_ab.sh "$OUT"
# Variants: base; matmul split up to full fill (--matmul-split-below 1); fused Winograd F(4×4)
# up to FUSED channels (--fused-wino4-max); both. Env: MODELS (comma-separated), ITERS (10),
# FUSED (64), MAX_CHANNELS (64); SIZE, BATCH and SMALL=1 (winograd4's --small) shrink it for a
# check on the software adapter. Writes OUT/ab.jsonl, OUT/AB.md and OUT/winograd4.jsonl.
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-fc_siam_diff,fc_ef,fc_siam_conc,snunet_c16,tinycd,stanet_base_r18,changestar_farseg_r18,changeformer_mit_b1}
iters=${ITERS:-10}; fused=${FUSED:-64}
export NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv 2>&1 | tee "$out/gpu.txt"
finish() { deno run -A bench/planner_ab_table.ts "$out/ab.jsonl" > "$out/AB.md"; cat "$out/AB.md"; }
trap finish EXIT
trap 'exit 143' TERM INT
for flags in "" "--matmul-split-below 1" "--fused-wino4-max $fused" \
  "--matmul-split-below 1 --fused-wino4-max $fused"; do
  echo "== variant: ${flags:-base}"
  # shellcheck disable=SC2086 # the flags are words
  timeout 300 deno run -A bench/gpu_train_step.ts --models "$models" --iters "$iters" \
    --size "${SIZE:-512}" --batch "${BATCH:-8}" $flags 2>&1 |
    tee -a "$out/ab.jsonl"
done
small=(); [ "${SMALL:-}" = 1 ] && small=(--small)
timeout 240 deno run -A bench/gpu_winograd4.ts --max-channels "${MAX_CHANNELS:-64}" "${small[@]}" 2>&1 |
  tee "$out/winograd4.jsonl"
