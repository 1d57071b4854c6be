"""Trains a change detector in PyTorch on a dataset folder with the recipe `deno task train` uses,
to check the engine's training at scale against PyTorch on the same files (issue: GPU training
run). Same data rules (ROOT/val if present, else the first 100 sorted train pairs), random crops,
the same GPU augmentation (rot90, flips shared by A/B/label; per-image brightness ±32/255,
contrast and saturation 0.5-1.5, each with probability 1/2), ImageNet normalisation, AdamW with
betas (0.9, 0.99), linear warm-up from 1e-6 over min(1000, iters/10) steps then linear decay to
0, and the same per-image mIoU (a class absent from label and prediction scores 1).
Prints one JSON line per log/validation and a summary line.
--fp32 turns off TF32 (PyTorch's default for cuDNN convolutions on Ampere and later), so both sides
compute in float32. Without torchvision (a CPU-only check) PNGs are read by a small zlib + numpy decoder and the
device falls back to the CPU.
Usage: python3 bench/reference/train_synth.py --data ROOT --model tinycd --iters 1000
       [--batch 8] [--size 512] [--lr 3.57e-3] [--wd 9.45e-3] [--val-every 250] [--seed 0]"""
import argparse, json, os, struct, sys, time, zlib
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

try:
    from torchvision.io import ImageReadMode, decode_png, read_file

    def read_png(path, grey):
        return decode_png(read_file(path), ImageReadMode.GRAY if grey else ImageReadMode.RGB)
except ImportError:
    read_png = None

sys.path.insert(0, os.path.dirname(__file__))
from cd_models import build  # noqa: E402

# (LR, weight decay) as models/registry.ts
RECIPES = {"tinycd": (3.57e-3, 9.45e-3), "fc_siam_diff": (1e-3, 1e-2), "fc_siam_conc": (1e-3, 1e-2),
           "fc_ef": (1e-3, 1e-2), "snunet_c16": (1e-3, 5e-2)}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _png_fallback(path, grey):
    """8-bit grey / grey+alpha / RGB / RGBA, non-interlaced PNG → uint8 [C, H, W] (slow rows with
    Average or Paeth filters; only for CPU checks where torchvision is missing)."""
    import numpy as np
    data = open(path, "rb").read()
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or ctype not in (0, 2, 4, 6):
                raise ValueError(f"{path}: PNG colour type {ctype}, depth {depth} not supported")
            ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * ch)
    img, prev = np.zeros((h, w * ch), np.uint8), np.zeros(w * ch, np.int32)
    for r in range(h):
        f, line = raw[r, 0], raw[r, 1:].astype(np.int32)
        if f == 1:
            out = np.cumsum(line.reshape(w, ch), 0).reshape(-1) % 256
        elif f == 2:
            out = (line + prev) % 256
        elif f in (3, 4):
            out = line.copy()
            for i in range(w * ch):
                left = out[i - ch] if i >= ch else 0
                up, ul = prev[i], (prev[i - ch] if i >= ch else 0)
                if f == 3:
                    pred = (left + up) // 2
                else:
                    pa, pb, pc = abs(up - ul), abs(left - ul), abs(left + up - 2 * ul)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                out[i] = (out[i] + pred) % 256
        else:
            out = line
        img[r], prev = out, out
    img = torch.from_numpy(img.reshape(h, w, ch).transpose(2, 0, 1).copy())
    if ch in (2, 4):
        img = img[:ch - 1]
    if grey and img.shape[0] == 3:
        img = (img.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        img = img.round().to(torch.uint8)
    if not grey and img.shape[0] == 1:
        img = img.expand(3, -1, -1).contiguous()
    return img


def names_of(split):
    return sorted(n for n in os.listdir(os.path.join(split, "A")) if n.endswith(".png"))


class Pairs(Dataset):
    def __init__(self, split, names, crop=None):
        self.split, self.names, self.crop = split, names, crop

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        n = self.names[i]
        rd = lambda d, grey: (read_png or _png_fallback)(os.path.join(self.split, d, n), grey)
        a, b, y = rd("A", False), rd("B", False), rd("label", True)
        if self.crop and a.shape[1] > self.crop:
            top = torch.randint(0, a.shape[1] - self.crop + 1, ()).item()
            left = torch.randint(0, a.shape[2] - self.crop + 1, ()).item()
            sl = (slice(None), slice(top, top + self.crop), slice(left, left + self.crop))
            a, b, y = a[sl], b[sl], y[sl]
        return a, b, (y[0] > 127).to(torch.uint8)


def photometric(x, g):
    """x [B,3,H,W] in [0,1]: per image brightness, contrast, saturation, each with p = 1/2."""
    n = x.shape[0]
    coin = lambda: torch.rand(n, 1, 1, 1, device=x.device, generator=g) < 0.5
    u = lambda: torch.rand(n, 1, 1, 1, device=x.device, generator=g)
    bri = torch.where(coin(), (u() * 2 - 1) * (32 / 255), 0.0)
    con = torch.where(coin(), 0.5 + u(), 1.0)
    sat = torch.where(coin(), 0.5 + u(), 1.0)
    x = (x + bri) * con
    grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (grey + (x - grey) * sat).clamp(0, 1)


def augment(a, b, y, g, gc):
    """Geometry drawn on the CPU (gc, no GPU sync), photometry on the GPU (g)."""
    n = a.shape[0]
    ks, flips = torch.randint(0, 4, (n,), generator=gc).tolist(), (torch.rand(n, 2, generator=gc) < 0.5).tolist()
    out = []
    for i in range(n):
        ai, bi, yi = (torch.rot90(t[i], ks[i], dims=(-2, -1)) for t in (a, b, y))
        for dim, flip in zip((-1, -2), flips[i]):
            if flip:
                ai, bi, yi = ai.flip(dim), bi.flip(dim), yi.flip(dim)
        out.append((ai, bi, yi))
    a, b, y = (torch.stack(t) for t in zip(*out))
    return photometric(a, g), photometric(b, g), y


def normalise(x):
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def lr_at(step, lr, iters, warmup):
    if step < warmup:
        return 1e-6 + (lr - 1e-6) * step / max(1, warmup)
    return lr * (1 - min(1, (step - warmup) / max(1, iters - warmup)))


def loss_of(out, y):
    if out.shape[1] == 1:
        return F.binary_cross_entropy(out[:, 0].clamp(1e-7, 1 - 1e-7), y.float())
    return F.nll_loss(out, y.long())


def class_iou(tp, fp, fn):
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


@torch.no_grad()
def evaluate(model, loader, dev):
    model.eval()
    ious = []
    for a, b, y in loader:
        a, b, y = (t.to(dev, non_blocking=True) for t in (a, b, y))
        out = model(normalise(a.float() / 255), normalise(b.float() / 255))
        pred = (out[:, 0] > 0.5) if out.shape[1] == 1 else out.argmax(1).bool()
        y = y.bool()
        tp = (pred & y).sum((1, 2)).tolist()
        fp = (pred & ~y).sum((1, 2)).tolist()
        fn = (~pred & y).sum((1, 2)).tolist()
        tn = (~pred & ~y).sum((1, 2)).tolist()
        for i in range(len(tp)):
            ious.append((class_iou(tp[i], fp[i], fn[i]) + class_iou(tn[i], fn[i], fp[i])) / 2)
    model.train()
    return 100 * sum(ious) / len(ious)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="tinycd")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--lr", type=float)
    p.add_argument("--wd", type=float)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true",
                   help="no TF32 in cuDNN convolutions / matmuls (the engine computes in float32)")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    if a.fp32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    pin = dev == "cuda"
    lr0, wd = RECIPES[a.model]
    lr0, wd = a.lr or lr0, a.wd if a.wd is not None else wd
    train_dir = os.path.join(a.data, "train")
    train_names = names_of(train_dir)
    if os.path.isdir(os.path.join(a.data, "val")):
        val = Pairs(os.path.join(a.data, "val"), names_of(os.path.join(a.data, "val")))
    else:
        val, train_names = Pairs(train_dir, train_names[:100]), train_names[100:]
    train = Pairs(train_dir, train_names, a.size)
    loader_opts = dict(persistent_workers=True, prefetch_factor=4) if a.workers else {}
    tl = DataLoader(train, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=a.workers,
                    pin_memory=pin, **loader_opts)
    vl = DataLoader(val, batch_size=a.batch, num_workers=a.workers, pin_memory=pin)
    model = build(a.model).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr0, betas=(0.9, 0.99), weight_decay=wd)
    warmup = min(1000, a.iters // 10)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    gc = torch.Generator().manual_seed(a.seed)
    step, train_s, loss_sum, t_log = 0, 0.0, torch.zeros((), device=dev), time.perf_counter()
    t_start = time.perf_counter()
    best = None
    while step < a.iters:
        for xa, xb, y in tl:
            if step >= a.iters:
                break
            t0 = time.perf_counter()
            xa, xb, y = (t.to(dev, non_blocking=True) for t in (xa, xb, y))
            xa, xb, y = augment(xa.float() / 255, xb.float() / 255, y, g, gc)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, lr0, a.iters, warmup)
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model(normalise(xa), normalise(xb)), y)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
            if step % a.log_every == 0 or step == a.iters:
                mean = loss_sum.item() / a.log_every
                loss_sum.zero_()
                now = time.perf_counter()
                train_s += now - t0
                print(json.dumps({"type": "train", "impl": "pytorch", "step": step, "loss": round(mean, 5),
                                  "it_per_s": round(a.log_every / (now - t_log), 2)}), flush=True)
                t_log = now
            else:
                train_s += time.perf_counter() - t0
            if step % a.val_every == 0 or step == a.iters:
                if dev == "cuda":
                    torch.cuda.synchronize()
                tv = time.perf_counter()
                miou = evaluate(model, vl, dev)
                best = max(best or 0, miou)
                print(json.dumps({"type": "val", "impl": "pytorch", "step": step, "mIoU": round(miou, 3),
                                  "elapsed_s": round(time.perf_counter() - t_start, 1)}), flush=True)
                t_log += time.perf_counter() - tv
    total = time.perf_counter() - t_start
    print(json.dumps({"type": "summary", "impl": "pytorch", "model": a.model, "iters": a.iters, "batch": a.batch,
                      "size": a.size, "lr": lr0, "weight_decay": wd, "tf32": dev == "cuda" and not a.fp32,
                      "best_mIoU": round(best, 3),
                      "final_mIoU": round(miou, 3), "total_s": round(total, 1),
                      "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}), flush=True)


if __name__ == "__main__":
    main()
