#!/usr/bin/env bash
# Training parity, engine against PyTorch (issue 22): every model of MODELS trained with every seed
# of SEEDS by both, on the same synthetic files with the same recipe (bench/reference/
# train_synth.py mirrors the trainer), then one markdown table of best and final validation mIoU
# (bench/reference/parity_table.py) in OUT/parity.md. PyTorch runs with --fp32 (no TF32 convs),
# as the engine computes in float32:
#   . .gpu/enter.sh && bash bench/gpu_train_parity.sh "$OUT"
# Env: MODELS ("tinycd fc_ef fc_siam_conc fc_siam_diff snunet_c16 bit_r18 changeformer_mit_b0
# changer_ex_mit_b0"; the last three are Open-CD's transformer detectors, trained from scratch
# with their registry recipes: AdamW (0.9, 0.999), paramwise keys, Changer's OHEM, the Open-CD
# rotation / RotFlip / exchange augmentation, see train_synth.py; SIZE must then be a multiple
# of 32, at least 64), SEEDS ("0 1 2"), SIZE (256),
# ITERS (400), PAIRS (training pairs, 1000), VAL (validation pairs, 100), VAL_EVERY (ITERS/4),
# BATCH (8), JOBS (trainings at once on the one GPU, 4), WORKERS (PNG decode workers per run, 3),
# DATA (/tmp/cd-parity-SIZE-PAIRS), PY (python3), SKIP_SYNTH (1: reuse DATA as it is).
# Budget (estimate from issue 22's H100 rates at 512²: engine 21, PyTorch 15–16 FC-Siam-Diff
# steps/s, so roughly 3–4× that at 256²): 30 runs of 400 steps at SIZE=256 are ~8–15 s of
# training each plus ~10 s of start-up and validation; with JOBS=4 the whole grid takes about
# 4–6 minutes on one H100, SNUNet-c16 (2.7× FC-Siam-Diff's FLOPs) the longest. The three
# transformers (BIT-R18 has 2× FC-Siam-Diff's FLOPs, the MiT-b0 models fewer but attention-bound)
# add 18 runs whose time is not measured yet: run them alone first
# (MODELS="bit_r18 changeformer_mit_b0 changer_ex_mit_b0") to see what they take.
# CPU dry run (software adapter, CPU PyTorch without torchvision, TinyCD left out since its
# reference needs torchvision's EfficientNet):
#   MODELS=fc_siam_diff SEEDS=0 SIZE=64 ITERS=4 PAIRS=16 VAL=4 JOBS=2 PY=/tmp/tvenv5/bin/python \
#     bash bench/gpu_train_parity.sh /tmp/parity-dry
# and for a transformer (Debian's python3-torch, CPU, no torchvision; SIZE ≥ 64 for MiT):
#   MODELS=changer_ex_mit_b0 SEEDS=0 SIZE=64 ITERS=4 PAIRS=16 VAL=4 JOBS=2 PY=/usr/bin/python3 \
#     bash bench/gpu_train_parity.sh /tmp/parity-dry-cx
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-tinycd fc_ef fc_siam_conc fc_siam_diff snunet_c16 bit_r18 changeformer_mit_b0 changer_ex_mit_b0}
seeds=${SEEDS:-0 1 2}
size=${SIZE:-256}; iters=${ITERS:-400}; pairs=${PAIRS:-1000}; nval=${VAL:-100}
every=${VAL_EVERY:-$(( iters / 4 > 0 ? iters / 4 : 1 ))}
log_every=$(( iters < 50 ? iters : 50 ))
batch=${BATCH:-8}; jobs_max=${JOBS:-4}; workers=${WORKERS:-3}
data=${DATA:-/tmp/cd-parity-$size-$pairs}
py=${PY:-python3}
export PYTHONUNBUFFERED=1 NO_COLOR=1
here=$(pwd)
t_all=$SECONDS
if [[ ${SKIP_SYNTH:-0} != 1 ]]; then
  t0=$SECONDS
  deno run -A cli/synth.ts --out "$data" --pairs $((pairs + nval)) --size "$size" --val "$nval" \
    --test 0 --quiet --overwrite || exit 1
  echo "synth: $pairs + $nval pairs of ${size}², $((SECONDS - t0)) s"
fi

# One training; its log goes to OUT/{engine,torch}_log_MODEL_SEED.jsonl, its console to *.txt,
# its wall time and exit status to OUT/times.txt.
engine_run() {
  local model=$1 seed=$2 run="/tmp/cd-parity-run-$1-$2" t0=$SECONDS rc
  rm -rf "$run"
  deno run -A cli/train.ts --model "$model" --data "$data" --out "$run" --iters "$iters" \
    --batch "$batch" --size "$size" --val-every "$every" --log-every "$log_every" --seed "$seed" \
    --workers $(( workers > 0 ? workers : 1 )) > "$out/engine_train_${model}_$seed.txt" 2>&1
  rc=$?
  cp "$run/log.jsonl" "$out/engine_log_${model}_$seed.jsonl" 2>/dev/null
  rm -rf "$run"
  echo "engine $model seed $seed: $((SECONDS - t0)) s, exit $rc" | tee -a "$out/times.txt"
}
torch_run() {
  local model=$1 seed=$2 t0=$SECONDS rc
  "$py" "$here/bench/reference/train_synth.py" --data "$data" --model "$model" --iters "$iters" \
    --batch "$batch" --size "$size" --val-every "$every" --log-every "$log_every" --seed "$seed" \
    --workers "$workers" --fp32 > "$out/torch_log_${model}_$seed.jsonl" \
    2> "$out/torch_train_${model}_$seed.txt"
  rc=$?
  echo "pytorch $model seed $seed: $((SECONDS - t0)) s, exit $rc" | tee -a "$out/times.txt"
}

for model in $models; do
  for seed in $seeds; do
    for impl in engine torch; do
      while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n; done
      "${impl}_run" "$model" "$seed" &
    done
  done
done
wait
echo "all runs: $((SECONDS - t_all)) s"
"$py" bench/reference/parity_table.py "$out" --models "$models" | tee "$out/parity.md"
{
  echo
  echo "SIZE=$size ITERS=$iters PAIRS=$pairs VAL=$nval VAL_EVERY=$every BATCH=$batch SEEDS=\"$seeds\""
  echo "JOBS=$jobs_max (runs shared the GPU), total $((SECONDS - t_all)) s"
} >> "$out/parity.md"
