"""PyTorch (cuBLAS) f32 and TF32 matmul throughput for the sizes of bench/gpu_matmul.ts.
Run on the GPU machine in the same command as the Deno benchmark: python3 bench/reference/matmul.py
Times REPS products between CUDA events after a warm-up, best of 3 samples."""
import os
import time

import torch

SIZES = [int(s) for s in os.environ.get("MATMUL_SIZES", "1024,2048,4096,8192").split(",")]
TARGET_S = 0.3


def seconds_per_product(a, b, out):
    torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    t = time.perf_counter()
    torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    reps = max(3, min(500, round(TARGET_S / max(time.perf_counter() - t, 1e-5))))
    best = float("inf")
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            torch.matmul(a, b, out=out)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000 / reps)
    return best


def main():
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    # fp16: half operands with f32 accumulation (cuBLAS's default for half), the tensor-core peer
    # that WebGPU cannot reach (bench/results/tensor_cores_h100_s14.md).
    for label, dtype, tf32 in (
        ("fp32", torch.float32, False), ("tf32", torch.float32, True), ("fp16", torch.half, False)
    ):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for n in SIZES:
            g = torch.Generator(device="cuda").manual_seed(n)
            a = (torch.rand(n, n, device="cuda", generator=g) * 2 - 1).to(dtype)
            b = (torch.rand(n, n, device="cuda", generator=g) * 2 - 1).to(dtype)
            out = torch.empty(n, n, device="cuda", dtype=dtype)
            s = seconds_per_product(a, b, out)
            print(f"torch_{label:<8} NN {n:5d}  {2 * n**3 / s / 1e12:6.2f} TFLOP/s  {s * 1000:9.3f} ms")
            del a, b, out
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
