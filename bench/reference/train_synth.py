"""Trains a change detector in PyTorch on a dataset folder with the recipe `deno task train` uses,
to check the engine's training at scale against PyTorch on the same files (issue: GPU training
run). Same data rules (ROOT/val if present, else the first 100 sorted train pairs), random crops,
the same GPU augmentation (rot90, flips shared by A/B/label; per-image brightness ±32/255,
contrast and saturation 0.5-1.5, each with probability 1/2), ImageNet normalisation, AdamW with
betas (0.9, 0.99), linear warm-up from 1e-6 over min(1000, iters/10) steps then linear decay to
0, and the same per-image mIoU (a class absent from label and prediction scores 1).
Open-CD's transformer detectors (bit_r18, changeformer_mit_b0, changer_ex_mit_b0; plain-PyTorch
definitions in opencd_models.py) train with their registry recipe as the engine's trainer does:
the engine's from-scratch initialisation rules (opencd_models.opencd_init), AdamW betas
(0.9, 0.999), the paramwise custom keys matched by name as engine/optim/param_groups.ts (= mmengine:
longest key first, first substring of the parameter name wins; head lr x10, decay 0 for 'norm' /
'pos_block'; the LR multiplier scales the scheduled LR, warm-up included), CE over the valid
pixels or Changer's OHEM CE (kernels/ohem.ts semantics, opencd_models.ohem_ce_loss), and the
recipe's Open-CD augmentation (data/augment.ts + kernels/augment.ts: any-angle rotation, Changer's
RotFlip, the A/B exchange; see augment_opencd). Their logits are raw (not log-probabilities).
Prints one JSON line per log/validation and a summary line.
--fp32 turns off TF32 (PyTorch's default for cuDNN convolutions on Ampere and later), so both sides
compute in float32. Without torchvision (a CPU-only check) PNGs are read by a small zlib + numpy decoder and the
device falls back to the CPU.
Usage: python3 bench/reference/train_synth.py --data ROOT --model tinycd --iters 1000
       [--batch 8] [--size 512] [--lr 3.57e-3] [--wd 9.45e-3] [--val-every 250] [--seed 0]"""
import argparse, json, math, os, struct, sys, time, zlib
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
import opencd_models  # noqa: E402

# models/registry.ts recipes: LR, weight decay, AdamW betas, paramwise custom keys
# ({key: (lr_mult, decay_mult)}), OHEM (thresh, min_kept per image), Open-CD augmentation
# (data/augment.ts AugmentOptions fields: rotateProb, rotateDegrees, rotFlipProb, swapProb).
_CNN = dict(betas=(0.9, 0.99), keys=None, ohem=None, augment=None)
_OPENCD = dict(betas=(0.9, 0.999), keys=None, ohem=None)
_STANDARD_ROTATE = dict(rotateProb=0.5, rotateDegrees=180)
_SEGFORMER_KEYS = {"pos_block": (1.0, 0.0), "norm": (1.0, 0.0), "head": (10.0, 1.0)}
RECIPES = {
    "tinycd": dict(_CNN, lr=3.57e-3, wd=9.45e-3),
    "fc_siam_diff": dict(_CNN, lr=1e-3, wd=1e-2),
    "fc_siam_conc": dict(_CNN, lr=1e-3, wd=1e-2),
    "fc_ef": dict(_CNN, lr=1e-3, wd=1e-2),
    "snunet_c16": dict(_CNN, lr=1e-3, wd=5e-2),
    "bit_r18": dict(_OPENCD, lr=1e-3, wd=5e-2, augment=_STANDARD_ROTATE),
    "changeformer_mit_b0": dict(_OPENCD, lr=6e-5, wd=1e-2, keys=_SEGFORMER_KEYS, augment=_STANDARD_ROTATE),
    "changer_ex_mit_b0": dict(_OPENCD, lr=1e-4, wd=1e-2, keys=_SEGFORMER_KEYS, ohem=(0.7, 100_000),
                              augment=dict(rotateProb=0.5, rotateDegrees=20, rotFlipProb=0.5, swapProb=0.5)),
}
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


def draw_opencd(n, o, gc):
    """Per-sample geometry of data/augment.ts's Open-CD branch, drawn on the CPU: with rotateProb
    an angle uniform in +-rotateDegrees (no quarter turn then); with rotFlipProb set (Changer's
    MultiImgRandomRotFlip) and no angle taken, with that probability a quarter turn k in 0..3 and
    one flip along a random axis, else (Open-CD's standard pipeline) horizontal and vertical
    flips at 1/2 each; the A/B exchange with swapProb. The engine draws the same distributions
    from its own generator. Returns k, flip x (columns), flip y (rows), degrees, swap, [n] each."""
    u = torch.rand(n, 6, generator=gc)
    turned = u[:, 0] < o.get("rotateProb", 0)
    deg = torch.where(turned, (2 * u[:, 1] - 1) * o.get("rotateDegrees", 0), torch.zeros(n))
    if "rotFlipProb" in o:
        rf = ~turned & (u[:, 2] < o["rotFlipProb"])
        k = torch.where(rf, (u[:, 3] * 4).floor().clamp(max=3).long(), torch.zeros(n, dtype=torch.long))
        rows = u[:, 4] < 0.5  # np.flip axis 0 (rows, vertical), else axis 1 (columns)
        fx, fy = rf & ~rows, rf & rows
    else:
        k = torch.zeros(n, dtype=torch.long)
        fx, fy = u[:, 2] < 0.5, u[:, 3] < 0.5
    swap = u[:, 5] < o.get("swapProb", 0)
    return k, fx, fy, deg, swap


def augment_opencd(a, b, y, o, g, gc):
    """kernels/augment.ts on the GPU, batched: for every output pixel undo the flips (applied
    last), then take the quarter turn's integer source, or the angle rotation's float source
    (mmcv.imrotate: centre ((S-1)/2, (S-1)/2), positive degrees clockwise); images bilinear with
    0 outside each tap (OpenCV BORDER_CONSTANT 0, exact float here as there), the label nearest
    (source rounded) with 255 = ignored outside; then the exchange of A and B (not the label),
    then the photometric distortion per image (same as the CNN path)."""
    a, b, y = geometry_opencd(a, b, y, *(t.to(a.device, non_blocking=True) for t in draw_opencd(a.shape[0], o, gc)))
    return photometric(a, g), photometric(b, g), y


def geometry_opencd(a, b, y, k, fx, fy, deg, swap):
    """The geometry and exchange of augment_opencd for given per-sample parameters (kernels/
    augment.ts's k, flip x, flip y, angle, swap)."""
    n, _, s, _ = a.shape
    dev, s1, c = a.device, s - 1, (s - 1) / 2
    ii = torch.arange(s, device=dev)
    yy, xx = ii.view(1, s, 1).expand(n, s, s), ii.view(1, 1, s).expand(n, s, s)
    yy = torch.where(fy.view(n, 1, 1), s1 - yy, yy)
    xx = torch.where(fx.view(n, 1, 1), s1 - xx, xx)
    kk = k.view(n, 1, 1)
    qy = torch.where(kk == 1, xx, torch.where(kk == 2, s1 - yy, torch.where(kk == 3, s1 - xx, yy)))
    qx = torch.where(kk == 1, s1 - yy, torch.where(kk == 2, s1 - xx, torch.where(kk == 3, yy, xx)))
    rad = (-deg * (math.pi / 180)).view(n, 1, 1)
    ca, sa = torch.cos(rad), torch.sin(rad)
    dy, dx = yy.float() - c, xx.float() - c
    turned = (deg != 0).view(n, 1, 1)
    sy = torch.where(turned, c + sa * dx + ca * dy, qy.float())
    sx = torch.where(turned, c + ca * dx - sa * dy, qx.float())
    # bilinear (integer sources of the quarter turns have weight 0 on the next taps: exact copies)
    y0, x0 = sy.floor(), sx.floor()
    wy, wx = (sy - y0).unsqueeze(1), (sx - x0).unsqueeze(1)
    y0, x0 = y0.long(), x0.long()

    def tap(img, ty, tx):
        ok = ((ty >= 0) & (tx >= 0) & (ty < s) & (tx < s)).unsqueeze(1)
        idx = (ty.clamp(0, s1) * s + tx.clamp(0, s1)).view(n, 1, s * s).expand(n, img.shape[1], s * s)
        return img.flatten(2).gather(2, idx).view(img.shape) * ok

    def bilinear(img):
        top = tap(img, y0, x0) * (1 - wx) + tap(img, y0, x0 + 1) * wx
        bottom = tap(img, y0 + 1, x0) * (1 - wx) + tap(img, y0 + 1, x0 + 1) * wx
        return top * (1 - wy) + bottom * wy

    a2, b2 = bilinear(a), bilinear(b)
    ly, lx = torch.where(turned, (sy + 0.5).floor(), qy.float()), torch.where(turned, (sx + 0.5).floor(), qx.float())
    inside = (ly >= 0) & (lx >= 0) & (ly <= s1) & (lx <= s1)
    lidx = (ly.clamp(0, s1).long() * s + lx.clamp(0, s1).long()).view(n, s * s)
    y2 = torch.where(inside, y.view(n, s * s).gather(1, lidx).view(n, s, s), torch.full_like(y, 255))
    sw = swap.view(n, 1, 1, 1)
    return torch.where(sw, b2, a2), torch.where(sw, a2, b2), y2


def param_groups(model, wd, keys):
    """engine/optim/param_groups.ts (mmengine's DefaultOptimWrapperConstructor custom_keys):
    keys sorted longest first, ties alphabetical; the first key that is a substring of the
    parameter's name ('.name' for a parameter of the root module) gives its (lr_mult,
    decay_mult); none: 1 and 1. One AdamW group per distinct pair; each group keeps its lr_mult."""
    if not keys:
        return [{"params": list(model.parameters()), "lr_mult": 1.0, "weight_decay": wd}], None
    order = sorted(sorted(keys), key=len, reverse=True)
    groups, chosen = {}, {}
    for name, prm in model.named_parameters():
        full = name if "." in name else "." + name
        key = next((k for k in order if k in full), None)
        lr_mult, decay_mult = keys[key] if key else (1.0, 1.0)
        groups.setdefault((lr_mult, decay_mult), []).append(prm)
        chosen[name] = key
    return [{"params": p, "lr_mult": lm, "weight_decay": wd * dm} for (lm, dm), p in groups.items()], chosen


def normalise(x):
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def lr_at(step, lr, iters, warmup):
    if step < warmup:
        return 1e-6 + (lr - 1e-6) * step / max(1, warmup)
    return lr * (1 - min(1, (step - warmup) / max(1, iters - warmup)))


def loss_of(out, y, recipe=None):
    if recipe is not None:  # Open-CD model: raw logits, labels 0 / 1 / 255 (ignored)
        if recipe["ohem"]:
            thresh, min_kept = recipe["ohem"]
            return opencd_models.ohem_ce_loss(out, y.long(), thresh, min_kept)
        return opencd_models.ce_loss(out, y.long())
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
    recipe = RECIPES[a.model]
    opencd = a.model in opencd_models.MODELS
    lr0, wd = a.lr or recipe["lr"], a.wd if a.wd is not None else recipe["wd"]
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
    if opencd:
        if a.size % 32 or a.size < 64:
            sys.exit(f"{a.model}: --size must be a multiple of 32, at least 64 (MiT / BIT strides)")
        model = opencd_models.opencd_init(opencd_models.build(a.model)).to(dev).train()
    else:
        model = build(a.model).to(dev).train()
    groups, chosen = param_groups(model, wd, recipe["keys"])
    if chosen is not None:
        by_key = {}
        for k in chosen.values():
            by_key[k] = by_key.get(k, 0) + 1
        print(f"# paramwise {a.model}: parameters per custom key {by_key}", file=sys.stderr)
    opt = torch.optim.AdamW(groups, lr=lr0, betas=recipe["betas"], weight_decay=wd)
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
            if recipe["augment"]:
                xa, xb, y = augment_opencd(xa.float() / 255, xb.float() / 255, y, recipe["augment"], g, gc)
            else:
                xa, xb, y = augment(xa.float() / 255, xb.float() / 255, y, g, gc)
            lr = lr_at(step, lr0, a.iters, warmup)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model(normalise(xa), normalise(xb)), y, recipe if opencd else None)
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
                      "size": a.size, "lr": lr0, "weight_decay": wd, "betas": list(recipe["betas"]),
                      "paramwise": recipe["keys"], "ohem": recipe["ohem"], "augment": recipe["augment"],
                      "tf32": dev == "cuda" and not a.fp32,
                      "best_mIoU": round(best, 3),
                      "final_mIoU": round(miou, 3), "total_s": round(total, 1),
                      "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}), flush=True)


if __name__ == "__main__":
    main()
