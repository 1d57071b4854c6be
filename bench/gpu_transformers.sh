#!/usr/bin/env bash
# The Open-CD transformer detectors on the GPU machine (../shared/GPU.md):
#   . .gpu/enter.sh && bash bench/gpu_transformers.sh "$OUT"          # speed
#   . .gpu/enter.sh && PART=train bash bench/gpu_transformers.sh "$OUT"  # short training runs
# speed: train step and inference at batch 8 × 512² of each model on this engine beside PyTorch
# eager and torch.compile of the same architecture (bench/reference/opencd_models.py), with the
# recipe's loss (OHEM for Changer) and the peak memory of each, all in one call.
# train: each model trains ITERS steps on a synthetic benchmark (SIZE², PAIRS pairs) with its
# recipe and reports validation mIoU every VAL_EVERY steps.
# PART=all does both in one call (speed without compile, training, then compile).
# Env: MODELS, PART (speed | train | compile | all), ITERS (600), PAIRS (1000), SIZE (256), VAL_EVERY (150)
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-bit_r18 changeformer_mit_b0 changer_ex_mit_b0}
export PYTHONUNBUFFERED=1 NO_COLOR=1
part=${PART:-speed}
if [ "$part" = all ]; then # one call: speed without compile, training runs, then compile
  PART=speed NO_COMPILE=1 bash "$0" "$out"
  PART=train bash "$0" "$out"
  PART=compile bash "$0" "$out"
  exit
fi
if [ "$part" = speed ]; then
  nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv | tee "$out/gpu.txt"
  for m in $models; do # eager and ours first: compiling takes minutes
    echo "== $m"
    timeout 150 python3 bench/reference/train_step.py --model "$m" | tee -a "$out/step.jsonl"
    timeout 150 deno run -A bench/gpu_train_step.ts --models "$m" | tee -a "$out/step.jsonl"
  done
fi
if [ "$part" = compile ] || { [ "$part" = speed ] && [ -z "${NO_COMPILE:-}" ]; }; then
  for m in $models; do
    echo "== $m, torch.compile"
    timeout 240 python3 bench/reference/train_step.py --model "$m" --compile --iters 10 2>&1 |
      tee -a "$out/step.jsonl"
  done
fi
if [ "$part" = train ]; then
  iters=${ITERS:-600}; pairs=${PAIRS:-1000}; size=${SIZE:-256}; every=${VAL_EVERY:-150}
  data=/tmp/cd-synth-$size
  t0=$SECONDS
  deno run -A cli/synth.ts --out "$data" --pairs $((pairs + 100)) --size "$size" --val 100 \
    --test 0 --quiet --overwrite || exit 1
  echo "synth: $((SECONDS - t0)) s"
  # The all-unchanged baseline on the validation labels (per-image mIoU, the metric rules of
  # docs/ARCHITECTURE.md): (1 − CAR + [CAR = 0]) / 2 per image.
  python3 -c "
import glob, torchvision.io as io
v = [io.read_image(f).float().gt(127).float().mean().item() for f in sorted(glob.glob('$data/val/label/*.png'))]
print('all-unchanged baseline mIoU %.2f over %d val pairs' % (100 * sum((1 - c + (c == 0)) / 2 for c in v) / len(v), len(v)))
" | tee "$out/baseline.txt"
  for m in $models; do
    run="/tmp/cd-run-$m"; rm -rf "$run"; t0=$SECONDS
    timeout "${TRAIN_TIMEOUT:-150}" deno run -A cli/train.ts --model "$m" --data "$data" --out "$run" --iters "$iters" \
      --batch 8 --val-every "$every" --log-every 50 --seed 0 > "$out/train_$m.txt" 2>&1
    echo "$m: exit $?, $((SECONDS - t0)) s"
    cp "$run/log.jsonl" "$out/log_$m.jsonl" 2>/dev/null
    grep '"val"' "$out/log_$m.jsonl" | cut -c1-200
  done
fi
