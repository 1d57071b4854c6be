"""Step-by-step training parity on the CPU (issue 22): PyTorch side. Builds a model of
cd_models.py with a seed, writes its initial weights and a fixed set of small batches (already
normalised, no augmentation) to safetensors, trains --steps AdamW steps with the trainer's
schedule and records every step's loss, the final weights and eval-mode log-probabilities of the
first batch. bench/step_parity.ts replays the same steps in the engine and compares.
Dropout is switched off, or with --engine-dropout every Dropout2d draws the engine's masks (the
hash of kernels/dropout.ts and the per-step seed stream of engine/nn/dropout.ts, reset from
(seed, step) as the trainer does), so the fused BN + ReLU + Dropout2d passes are compared too. The same steps
also run in float64: PyTorch's own float32-against-float64 drift is the yardstick for the engine's.
Usage: python3 bench/reference/step_parity.py --model fc_siam_diff --out DIR [--seed 0]
       [--size 32] [--batch 2] [--steps 20] [--lr 1e-3] [--wd 1e-2]"""
import argparse, copy, json, os, struct, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from cd_models import build  # noqa: E402
from train_synth import RECIPES, lr_at  # noqa: E402


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        dt = {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def batches(n, batch, size, seed):
    """Pairs where B differs from A inside a blocky change mask (so the loss can fall)."""
    g = torch.Generator().manual_seed(seed + 1000)
    out = []
    for _ in range(n):
        a = torch.randn(batch, 3, size, size, generator=g)
        coarse = (torch.rand(batch, 1, size // 8, size // 8, generator=g) < 0.35).float()
        y = F.interpolate(coarse, scale_factor=8, mode="nearest")
        b = a + y * (1.5 + torch.randn(batch, 3, size, size, generator=g)) + 0.2 * torch.randn(
            batch, 3, size, size, generator=g)
        out.append((a, b, y[:, 0].to(torch.uint8)))
    return out


M32 = 0xFFFFFFFF


def _mix32(h):
    h ^= h >> 16
    h = (h * 0x21F0AAAD) & M32
    h ^= h >> 15
    h = (h * 0x735A2D97) & M32
    return h ^ (h >> 15)


def _unit_hash(seed, unit):
    return _mix32(_mix32((unit + _mix32(seed)) & M32) ^ _mix32(seed ^ 0x9E3779B9))


class EngineDropout2d(torch.nn.Module):
    """Dropout2d with the engine's masks: call k (1-based) of step t uses seed
    stream(seed, t) + k·0x27d4eb2f; plane u = b·C + c is kept when its hash ≥ round(p·2³²)."""

    def __init__(self, p, seed):
        super().__init__()
        self.p, self.seed, self.stream, self.calls = p, seed, 0, 0

    def reset(self, step):
        self.stream = ((((self.seed ^ 0x9E3779B9) * 0x85EBCA6B) & M32) + ((step * 0xC2B2AE35) & M32)) & M32
        self.calls = 0

    def forward(self, x):
        if not self.training:
            return x
        self.calls += 1
        s = (self.stream + self.calls * 0x27D4EB2F) & M32
        thr = min(M32, round(self.p * 2 ** 32))
        n, c = x.shape[:2]
        keep = torch.tensor([_unit_hash(s, u) >= thr for u in range(n * c)], dtype=x.dtype)
        return x * (keep.view(n, c, 1, 1) * (1 / (1 - self.p)))


def run_steps(model, data, lrs, wd):
    opt = torch.optim.AdamW(model.parameters(), lr=lrs[0], betas=(0.9, 0.99), weight_decay=wd)
    losses = []
    for step, (xa, xb, y) in enumerate(data):
        for group in opt.param_groups:
            group["lr"] = lrs[step]
        for m in model.modules():
            if isinstance(m, EngineDropout2d):
                m.reset(step)
        opt.zero_grad(set_to_none=True)
        out = model(xa, xb)
        loss = F.nll_loss(out, y.long()) if out.shape[1] == 2 else F.binary_cross_entropy(
            out[:, 0].clamp(1e-7, 1 - 1e-7), y.float())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="fc_siam_diff")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float)
    p.add_argument("--wd", type=float)
    p.add_argument("--engine-dropout", action="store_true")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    model = build(a.model).train()
    for parent in list(model.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, torch.nn.Dropout2d):
                if a.engine_dropout:
                    setattr(parent, name, EngineDropout2d(m.p, a.seed))
                else:
                    m.p = 0.0
    os.makedirs(a.out, exist_ok=True)
    save_safetensors(os.path.join(a.out, "init.safetensors"), model.state_dict())
    data = batches(a.steps, a.batch, a.size, a.seed)
    flat = {}
    for i, (xa, xb, y) in enumerate(data):
        flat[f"a{i}"], flat[f"b{i}"], flat[f"y{i}"] = xa, xb, y
    save_safetensors(os.path.join(a.out, "batches.safetensors"), flat)
    lr0, wd = RECIPES[a.model]
    lr0, wd = a.lr or lr0, a.wd if a.wd is not None else wd
    warmup = min(1000, a.steps // 10)
    lrs = [lr_at(s, lr0, a.steps, warmup) for s in range(a.steps)]
    # The same steps in float64 first (from a copy): PyTorch's own float32 drift is the yardstick.
    m64 = copy.deepcopy(model).double()
    losses_f64 = run_steps(m64, [tuple(t.double() if t.is_floating_point() else t for t in d) for d in data],
                           lrs, wd)
    losses = run_steps(model, data, lrs, wd)
    model.eval()
    with torch.no_grad():
        logp = model(data[0][0], data[0][1])
    save_safetensors(os.path.join(a.out, "final.safetensors"), {**model.state_dict(), "__eval_logp": logp})
    with open(os.path.join(a.out, "torch.json"), "w") as f:
        json.dump({"model": a.model, "seed": a.seed, "size": a.size, "batch": a.batch, "steps": a.steps,
                   "lrs": lrs, "betas": [0.9, 0.99], "weight_decay": wd, "dropout": "engine" if a.engine_dropout else "off",
                   "losses": losses, "losses_f64": losses_f64}, f)
    print(json.dumps({"impl": "pytorch", "losses": [round(v, 6) for v in losses]}))


if __name__ == "__main__":
    main()
