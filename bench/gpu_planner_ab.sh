#!/usr/bin/env bash
# The planner experiments against the default plans on the GPU machine: each variant's training
# step and inference for every model (bench/gpu_train_step.ts, all models in one process per
# variant, at most 300 s each), then, with WINO=1, the fused F(4×4) kernels per layer beside
# F(2×2), F(4×4) and F(6×6) around the GEMM (bench/gpu_winograd4.ts, layers of at most
# MAX_CHANNELS channels each way, at most 240 s):
#   . .gpu/enter.sh && bash bench/gpu_planner_ab.sh "$OUT"
# Variants: base; split: matmul split up to full fill (--matmul-split-below 1); fused: the fused
# Winograd F(4×4) kernels (forward, input and weight gradients) up to FUSED channels
# (--fused-wino4-max), or fusedN up to N (fused128: SNUNet's decoder convs too); fillE: the matmul
# planner charging part-full launches work / fill^E instead of / fill (fill0.3: --matmul-fill-exp
# 0.3, which moves 256×256×8192 × 36 from 64×64 tiles to 128×128); shuffleN: kernel = stride
# transposed convs from N channels as GEMMs + pixel shuffles (shuffle32: SNUNet's 32-channel
# up-convs at 512², 4.3 ms of its 34 ms inference on the input-gradient GEMM); tapN: those up to
# N channels each way on one pass of one thread per input pixel (kernels/conv2d_tap_expand.ts,
# tap32: the same four); small: the matmul planner may pick 16×16, 16×32 and 32×16 tiles
# (--matmul-small-tiles: 16-channel Winograd weight gradients); half: inference with Winograd
# F(4×4)'s V and P stored in f16 (--half-inference; the train step is the base's); f6: the
# Winograd GEMM routes take F(6×6, 3×3) where its tiles fit (--winograd6); both: split and fused.
# One device call runs 600 s at most, so the defaults fit one (VARIANTS="base fused", WINO=0);
# spread the rest over calls with the base in each, e.g. VARIANTS="base fused128 split", then
# VARIANTS=base WINO=1. Env: VARIANTS, WINO, MODELS (comma-separated), ITERS (10), FUSED (64),
# MAX_CHANNELS (64); SIZE, BATCH and SMALL=1 (winograd4's --small) shrink it for a check on the
# software adapter. Writes OUT/ab.jsonl, OUT/AB.md and OUT/winograd4.jsonl.
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-fc_siam_diff,fc_ef,fc_siam_conc,snunet_c16,tinycd,stanet_base_r18,changestar_farseg_r18,changeformer_mit_b1}
iters=${ITERS:-10}; fused=${FUSED:-64}
export NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv 2>&1 | tee "$out/gpu.txt"
finish() { deno run -A bench/planner_ab_table.ts "$out/ab.jsonl" > "$out/AB.md"; cat "$out/AB.md"; }
trap finish EXIT
trap 'exit 143' TERM INT
for v in ${VARIANTS:-base fused}; do
  case "$v" in
    base) flags="" ;;
    split) flags="--matmul-split-below 1" ;;
    fused) flags="--fused-wino4-max $fused" ;;
    fused[0-9]*) flags="--fused-wino4-max ${v#fused}" ;;
    fill[0-9]*) flags="--matmul-fill-exp ${v#fill}" ;;
    shuffle[0-9]*) flags="--shuffle-min-channels ${v#shuffle}" ;;
    tap[0-9]*) flags="--tap-expand-max ${v#tap}" ;;
    small) flags="--matmul-small-tiles" ;;
    half) flags="--half-inference" ;;
    f6) flags="--winograd6" ;;
    both) flags="--matmul-split-below 1 --fused-wino4-max $fused" ;;
    *) echo "VARIANTS: unknown variant $v (base split fused fusedN fillE shuffleN tapN small half f6 both)" >&2; exit 2 ;;
  esac
  echo "== variant: $v"
  # shellcheck disable=SC2086 # the flags are words
  timeout 300 deno run -A bench/gpu_train_step.ts --models "$models" --iters "$iters" \
    --size "${SIZE:-512}" --batch "${BATCH:-8}" $flags 2>&1 |
    tee -a "$out/ab.jsonl"
done
[ "${WINO:-0}" = 1 ] || exit 0
small=(); [ "${SMALL:-}" = 1 ] && small=(--small)
timeout 240 deno run -A bench/gpu_winograd4.ts --max-channels "${MAX_CHANNELS:-64}" "${small[@]}" 2>&1 |
  tee "$out/winograd4.jsonl"
