#!/usr/bin/env bash
# Tensor cores through WGSL (engine/precision.ts) on the GPU machine, in one call:
#   . .gpu/enter.sh && bash bench/gpu_precision.sh "$OUT"
# 1. bench/gpu_coop_probe.ts: the cooperative-matrix feature, fragment types, load layout, and
#    a tiled f16-operand GEMM's TFLOP/s (OUT/probe.log);
# 2. the GPU-only tests of the route (matmul_coop_test, precision_test; OUT/tests.log);
# 3. per model of MODELS: our training step and inference at batch 8 × 512² in --precision f32
#    and f16, then PyTorch eager (and torch.compile with COMPILE=1) of the same architecture
#    (OUT/step.jsonl, one JSON line each; bench/reference/train_step.py).
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-fc_siam_diff changeformer_mit_b0 changestar_farseg_r18}
export NO_COLOR=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
timeout 150 deno run -A bench/gpu_coop_probe.ts 2>&1 | tee "$out/probe.log" | cut -c1-300
MATMUL_SIZES=4096,8192 timeout 90 deno run -A bench/gpu_matmul.ts 2>&1 | tail -4 | tee -a "$out/probe.log"
MATMUL_SIZES=4096,8192 timeout 60 python3 bench/reference/matmul.py 2>&1 | tee -a "$out/probe.log"
timeout 150 deno test -A tests/engine/matmul_coop_test.ts tests/engine/precision_test.ts 2>&1 |
  tee "$out/tests.log" | tail -8 | cut -c1-1500
for m in $models; do
  for p in f32 f16; do
    timeout 150 deno run -A bench/gpu_train_step.ts --models "$m" --precision "$p" 2>&1 |
      grep '^{' | tee -a "$out/step.jsonl"
  done
  timeout 120 python3 bench/reference/train_step.py --model "$m" 2>&1 | grep '^{' |
    tee -a "$out/step.jsonl"
  if [[ ${COMPILE:-0} == 1 ]]; then
    timeout 300 python3 bench/reference/train_step.py --model "$m" --compile 2>&1 | grep '^{' |
      tee -a "$out/step.jsonl"
  fi
done
