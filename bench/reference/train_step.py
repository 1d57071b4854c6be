"""Times one training step (forward, loss, backward, AdamW) and inference of a change-detection
model in PyTorch eager (cudnn.benchmark on, default TF32), batch B of S×S pairs; prints JSON.
Open-CD's detectors (opencd_models.py, and the rest of Table II in table2/, each checked against
the upstream outputs by table2/check.py) train with their recipe loss (CE, OHEM CE, BCE with deep
supervision or auxiliary heads, STANet's BCL) and AdamW at their configs' lr / weight decay; --compile falls back to eager, saying so, if it fails.
Usage: python3 bench/reference/train_step.py --model tinycd [--batch 8] [--size 512] [--iters 20]"""
import argparse, json, os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from cd_models import build  # noqa: E402
import opencd_models  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "table2"))
import models as table2  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="also print CUDA time per kernel name of one training step")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = "cuda"
    lib = opencd_models if a.model in opencd_models.MODELS else table2 if a.model in table2.MODELS else None
    opencd = lib is not None
    model = (lib.build(a.model) if opencd else build(a.model)).to(dev)
    fwd = torch.compile(model) if a.compile else model
    if opencd:
        lr, wd = lib.OPTIM[a.model]
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=wd)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    g = torch.Generator(device=dev).manual_seed(0)
    x1 = torch.randn(a.batch, 3, a.size, a.size, device=dev, generator=g)
    x2 = torch.randn(a.batch, 3, a.size, a.size, device=dev, generator=g)
    y = (torch.rand(a.batch, a.size, a.size, device=dev, generator=g) > 0.9).long()

    def step():
        opt.zero_grad(set_to_none=True)
        out = fwd(x1, x2)
        if opencd:  # the forward's outputs; the recipe's loss
            loss = lib.loss_fn(a.model)(out, y)
        elif out.shape[1] == 1:
            loss = F.binary_cross_entropy(out[:, 0], y.float())
        else:
            loss = F.nll_loss(out, y)
        loss.backward()
        opt.step()

    def timeit(fn, n):
        # Two timed rounds, the second reported, as bench/gpu_train_step.ts does.
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        for _ in range(2):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t) / n * 1000
        return ms

    impl = "pytorch" + ("-compile" if a.compile else "")
    if a.compile:  # compile forward, backward and eval inference now, so a failure shows here
        try:
            model.train()
            step()
            model.eval()
            with torch.no_grad():
                fwd(x1, x2)
        except Exception as e:
            print(f"# torch.compile failed for {a.model} ({type(e).__name__}: {str(e)[:400]}); "
                  "timing eager instead", file=sys.stderr)
            fwd, impl = model, "pytorch-compile-failed-eager"
    model.train()
    torch.cuda.reset_peak_memory_stats()
    train_ms = timeit(step, a.iters)
    peak = torch.cuda.max_memory_allocated() / 1e9
    if a.profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        rows = {}
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                r = rows.setdefault(e.name[:90], [0, 0.0])
                r[0] += 1
                r[1] += e.device_time / 1000
        total = sum(r[1] for r in rows.values())
        print(f"# {a.model} pytorch: {total:.2f} ms CUDA in one profiled step")
        for name, (n, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:30]:
            print(f"#   {ms:9.3f} ms {n:5d}x  {name}")
    model.eval()
    with torch.no_grad():
        infer_ms = timeit(lambda: fwd(x1, x2), a.iters)
    print(json.dumps({"model": a.model, "impl": impl, "batch": a.batch,
                      "size": a.size, "train_ms": round(train_ms, 2), "infer_ms": round(infer_ms, 2),
                      "pairs_per_s_train": round(a.batch / train_ms * 1000, 1), "peak_gb": round(peak, 2),
                      "params": sum(p.numel() for p in model.parameters()),
                      "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
