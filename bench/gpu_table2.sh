#!/usr/bin/env bash
# The rest of Table II on the GPU machine (issue 23), in one call: each model's training step
# (its recipe's loss and AdamW) and inference at batch 8 × 512² on this engine beside PyTorch
# eager of the same architecture (bench/reference/table2/, each mirror checked against the
# upstream outputs by table2/check.py), with the peak memory of each:
#   . .gpu/enter.sh && bash bench/gpu_table2.sh "$OUT"
# Env: MODELS (all eleven), ITERS (timed steps per round: 10), COMPILE=1 adds torch.compile
# (after every model's eager and ours, up to 300 s each for its warm-up). Writes OUT/TABLE.md.
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-lightcdnet_s hanet changeformer_mit_b1 changer_ex_mit_b1 changer_ex_r18 changer_ex_s50 stanet_base_r18 changestar_upernet_r18 changestar_farseg_r18 ifn_vgg16 cgnet_vgg16}
iters=${ITERS:-10}
export PYTHONUNBUFFERED=1 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv | tee "$out/gpu.txt"
for m in $models; do
  echo "== $m"
  timeout 120 python3 bench/reference/train_step.py --model "$m" --iters "$iters" 2>&1 | tee -a "$out/step.jsonl"
  timeout 120 deno run -A bench/gpu_train_step.ts --models "$m" --iters "$iters" 2>&1 | tee -a "$out/step.jsonl"
done
if [ -n "${COMPILE:-}" ]; then
  for m in $models; do
    timeout 300 python3 bench/reference/train_step.py --model "$m" --compile --iters "$iters" 2>&1 |
      tee -a "$out/step.jsonl"
  done
fi
# One table of everything measured (ours, eager and, with COMPILE, torch.compile).
deno run -A bench/step_table.ts "$out/step.jsonl" > "$out/TABLE.md" && cat "$out/TABLE.md"
