#!/usr/bin/env bash
# Every GPU-machine benchmark with its PyTorch reference in the same run (../shared/GPU.md):
#   . .gpu/enter.sh && bash bench/gpu_all.sh "$OUT"
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
echo "== matmul"; python3 bench/reference/matmul.py | tee "$out/matmul_torch.txt"
deno run -A bench/gpu_matmul.ts | tee "$out/matmul.txt"
echo "== conv layers"; deno run -A bench/gpu_conv.ts --list > "$out/layers.json"
python3 bench/reference/conv.py "$out/layers.json" > "$out/conv_torch.json"
deno run -A bench/gpu_conv.ts --torch "$out/conv_torch.json" | tee "$out/conv.txt"
echo "== attention, loss, confusion"; python3 bench/reference/method_kernels.py > "$out/method_torch.json"
deno run -A bench/gpu_method_kernels.ts --torch "$out/method_torch.json" | tee "$out/method.txt"
echo "== train step"
for m in fc_siam_diff tinycd fc_ef fc_siam_conc snunet_c16 bit_r18 changeformer_mit_b0 changer_ex_mit_b0; do
  python3 bench/reference/train_step.py --model "$m" | tee -a "$out/train_step.jsonl"
  deno run -A bench/gpu_train_step.ts --models "$m" | tee -a "$out/train_step.jsonl"
done
