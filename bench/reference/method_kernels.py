"""PyTorch side of bench/gpu_method_kernels.ts: the same cases at the same sizes, timed with CUDA
events (warm-up, then n calls per sample so a sample lasts ~40 ms, median of 5), printed as JSON
{"device": ..., "results": {key: ms per call}} for the Deno script to put beside its own numbers.

Cases: scaled_dot_product_attention (fp32, PyTorch's own backend choice; bf16 as an extra) at
BIT's decoder / encoder and MiT-b0 stage-1 shapes, forward and forward + backward; the CD loss
(BCE-with-logits or CE with ignored pixels and class weights, + λ·MSE to a teacher) + backward at
8 × 512²; per-image confusion counts by tensor ops and by bincount; softmax over channels.
Usage: python3 bench/reference/method_kernels.py [--small] [--no-compile] > torch.json"""
import argparse, json, os, statistics, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_timing import bench as cuda_bench  # noqa: E402


def bench(fn, target_ms=40.0, reps=5):
    return cuda_bench(fn, target_ms=target_ms, reps=reps, min_n=3, max_n=1000)


def attention_cases(small, dev, out):
    shapes = [("attn_bit_dec", 8, 8, 16384, 4, 8), ("attn_bit_enc", 8, 8, 8, 8, 64),
              ("attn_mit_b0_s1", 8, 1, 16384, 256, 32)]
    if small:
        shapes = [("attn_bit_dec", 1, 2, 1024, 4, 8), ("attn_bit_enc", 2, 8, 8, 8, 64),
                  ("attn_mit_b0_s1", 1, 1, 1024, 64, 32)]
    for key, b, h, lq, lk, d in shapes:
        for dtype, suffix in ((torch.float32, ""), (torch.bfloat16, "_bf16")):
            q = torch.randn(b, h, lq, d, device=dev, dtype=dtype, requires_grad=True)
            k = torch.randn(b, h, lk, d, device=dev, dtype=dtype, requires_grad=True)
            v = torch.randn(b, h, lk, d, device=dev, dtype=dtype, requires_grad=True)
            dout = torch.randn(b, h, lq, d, device=dev, dtype=dtype)

            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v)

            def fwdbwd():
                q.grad = k.grad = v.grad = None
                F.scaled_dot_product_attention(q, k, v).backward(dout)

            out[f"{key}_fwd{suffix}"] = bench(fwd)
            out[f"{key}_fwdbwd{suffix}"] = bench(fwdbwd)


def cd_loss(logits, y, teacher, lam, cw):
    """Class-weighted CE over non-ignored pixels (Σ w·ce / Σ w) + λ·MSE, as a PyTorch user writes it."""
    if logits.shape[1] == 1:
        valid = y != 255
        target = (y == 1).float()
        w = valid.float() if cw is None else torch.where(y == 1, cw[1], cw[0]) * valid
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target, weight=w, reduction="sum") / w.sum()
    else:
        ce = F.cross_entropy(logits, y, weight=cw, ignore_index=255)
    if lam:
        ce = ce + lam * F.mse_loss(logits, teacher)
    return ce


def confusion_ops(logits, y):
    pred = torch.sigmoid(logits[:, 0]) > 0.5 if logits.shape[1] == 1 else logits.argmax(1) == 1
    valid, truth = y != 255, y == 1
    return torch.stack([(pred & truth & valid).sum((1, 2)), (pred & ~truth & valid).sum((1, 2)),
                        (~pred & ~truth & valid).sum((1, 2)), (~pred & truth & valid).sum((1, 2))], 1)


def confusion_bincount(logits, y):
    b = y.shape[0]
    pred = torch.sigmoid(logits[:, 0]) > 0.5 if logits.shape[1] == 1 else logits.argmax(1) == 1
    truth = y == 1
    code = torch.where(pred, torch.where(truth, 0, 1), torch.where(truth, 3, 2))
    idx = torch.arange(b, device=y.device).view(b, 1, 1) * 4 + code
    idx = torch.where(y == 255, b * 4, idx)  # ignored pixels into one spare bin, dropped below
    return torch.bincount(idx.flatten(), minlength=b * 4 + 1)[: b * 4].view(b, 4)


def loss_cases(small, compile_loss, dev, out):
    b, s = (2, 128) if small else (8, 512)
    y = (torch.rand(b, s, s, device=dev) < 0.1).long()
    y[torch.rand(b, s, s, device=dev) < 0.01] = 255
    cw = torch.tensor([1.0, 4.0], device=dev)
    for c in (1, 2):
        logits = (torch.randn(b, c, s, s, device=dev) * 3).requires_grad_()
        teacher = torch.randn(b, c, s, s, device=dev) * 3

        def step(fn, lam, weights):
            def run():
                logits.grad = None
                fn(logits, y, teacher, lam, weights).backward()
            return run

        out[f"loss_c{c}_fwdbwd"] = bench(step(cd_loss, 0.0, None))
        out[f"loss_c{c}_kd_fwdbwd"] = bench(step(cd_loss, 1e-3, cw))

        def fwd_only():
            with torch.no_grad():
                cd_loss(logits, y, teacher, 1e-3, cw)

        out[f"loss_c{c}_kd_fwd"] = bench(fwd_only)
        if compile_loss:
            try:
                t = time.time()
                compiled = torch.compile(cd_loss)
                out[f"loss_c{c}_kd_fwdbwd_compiled"] = bench(step(compiled, 1e-3, cw))
                print(f"compiled loss c{c} in {time.time() - t:.0f} s", file=sys.stderr)
            except Exception as e:  # report, keep the eager numbers
                print(f"torch.compile failed: {e}", file=sys.stderr)
        with torch.no_grad():
            z = logits.detach()
            assert torch.equal(confusion_ops(z, y), confusion_bincount(z, y))
            out[f"conf_c{c}"] = bench(lambda: confusion_ops(z, y))
            out[f"conf_c{c}_bincount"] = bench(lambda: confusion_bincount(z, y))
            if c == 2:
                out["softmax_ch"] = bench(lambda: torch.softmax(z, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    dev = "cuda"
    torch.manual_seed(0)
    results = {}
    t = time.time()
    attention_cases(a.small, dev, results)
    loss_cases(a.small, not a.no_compile, dev, results)
    print(f"torch reference took {time.time() - t:.0f} s", file=sys.stderr)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "results": {k: round(v, 5) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
