"""CUDA-event timing shared by the reference scripts: warm up, size the repetition count to
about target_ms, then the median over reps of the mean time per call (ms)."""
import statistics

import torch


def bench(fn, target_ms=25.0, reps=5, min_n=2, max_n=300):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    n = max(min_n, min(max_n, int(target_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / n)
    return statistics.median(times)
