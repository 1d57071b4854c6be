"""PyTorch/cuDNN side of bench/gpu_conv.ts: the same layer shapes (read from the JSON that
`deno run -A bench/gpu_conv.ts --list` prints), forward, gradient w.r.t. the input (dgrad) and
w.r.t. the weight (wgrad) each timed on its own (aten.convolution_backward with one output
mask), cudnn.benchmark on, with TF32 off (keys NAME_OP) and on (NAME_OP_tf32). CUDA events,
warm-up, then n calls per sample so a sample lasts ~25 ms, median of 5.
Prints JSON {"device": ..., "results": {key: ms per call}}; ratios are printed by the Deno side.
Usage: python3 bench/reference/conv.py layers.json > torch.json"""
import json, os, statistics, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_timing import bench as cuda_bench  # noqa: E402


def bench(fn, target_ms=25.0, reps=5):
    return cuda_bench(fn, target_ms=target_ms, reps=reps, min_n=2, max_n=300)


def layer_cases(layer, dev):
    s, p, op, g = layer["stride"], layer["padding"], layer["outputPadding"], layer["groups"]
    t = layer["transposed"]
    x = torch.randn(*layer["x"], device=dev)
    w = torch.randn(*layer["w"], device=dev) * 0.1
    with torch.no_grad():
        y = (F.conv_transpose2d(x, w, None, s, p, op, g) if t else F.conv2d(x, w, None, s, p, 1, g))
    gy = torch.randn_like(y)

    def fwd():
        with torch.no_grad():
            if t:
                F.conv_transpose2d(x, w, None, s, p, op, g)
            else:
                F.conv2d(x, w, None, s, p, 1, g)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            gy, x, w, None, [s, s], [p, p], [1, 1], t, [op, op], g, mask)

    return {"fwd": fwd, "dgrad": backward([True, False, False]),
            "wgrad": backward([False, True, False])}


def main():
    layers = json.load(open(sys.argv[1]))
    dev = "cuda"
    torch.backends.cudnn.benchmark = True
    out = {}
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        suffix = "_tf32" if tf32 else ""
        for layer in layers:
            for op, fn in layer_cases(layer, dev).items():
                out[f"{layer['key']}_{op}{suffix}"] = bench(fn)
            torch.cuda.empty_cache()
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "results": out}))


if __name__ == "__main__":
    main()
