"""Checks opencd_models.py against the upstream Open-CD outputs in the fixtures: loads each seeded
weight file strictly, runs the first levir pair in eval mode (float32, TF32 off) and prints the max
|logit difference| per model; exits 1 above 1e-4. Also compares the losses, and every gradient when
the reference file holds grad.* tensors (the full ../shared/fixtures does; a folder made by
pack_opencd_fixtures.py keeps only logits and losses).
Usage: python3 bench/reference/check_opencd.py [FIXTURES_DIR]  (default ../shared/fixtures)"""
import os
import sys
import zlib
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import opencd_models  # noqa: E402
from pack_opencd_fixtures import NAMES, first_pair, read_safetensors  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def png_numpy(path):
    """Minimal PNG decoder (8-bit gray/RGB/RGBA, not interlaced) for machines without a library."""
    raw, pos, idat = open(path, "rb").read(), 8, b""
    while pos < len(raw):
        n = int.from_bytes(raw[pos:pos + 4], "big")
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, interlace = (int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big"),
                                             body[8], body[9], body[12])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    ch = {0: 1, 2: 3, 6: 4}.get(color)
    if depth != 8 or ch is None or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced gray/RGB/RGBA PNGs are supported here")
    data, stride = np.frombuffer(zlib.decompress(idat), np.uint8), w * ch
    out, prev = np.zeros((h, stride), np.int32), np.zeros(stride, np.int32)
    for y in range(h):
        f, row = data[y * (stride + 1)], data[y * (stride + 1) + 1:(y + 1) * (stride + 1)].astype(np.int32)
        if f == 2:
            row = (row + prev) & 255
        elif f in (1, 3, 4):  # these depend on the already-decoded left pixel: go pixel by pixel
            for x in range(0, stride, ch):
                left = row[x - ch:x] if x else np.zeros(ch, np.int32)
                up, ul = prev[x:x + ch], prev[x - ch:x] if x else np.zeros(ch, np.int32)
                if f == 1:
                    pred = left
                elif f == 3:
                    pred = (left + up) >> 1
                else:  # Paeth
                    pa, pb, pc = np.abs(up - ul), np.abs(left - ul), np.abs(left + up - 2 * ul)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
                row[x:x + ch] = (row[x:x + ch] + pred) & 255
        out[y], prev = row, row
    return out.reshape(h, w, ch).astype(np.uint8)


def read_png(path):
    """-> uint8 tensor [C, H, W]: torchvision.io if it works here, else PIL, else the numpy decoder."""
    try:
        import torchvision.io as tio
        return tio.decode_png(tio.read_file(path))
    except Exception:
        pass
    try:
        from PIL import Image
        a = np.array(Image.open(path))
    except Exception:
        a = png_numpy(path)
    a = a if a.ndim == 3 else a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def image(path, dev):
    x = read_png(path)[:3].float().div(255)
    return ((x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)).unsqueeze(0).to(dev)


def check(name, root, dev):
    ref, _ = read_safetensors(os.path.join(root, "weights", name + "_seed0.reference.safetensors"))
    sd, _ = read_safetensors(os.path.join(root, "weights", name + "_seed0.safetensors"))
    model = opencd_models.build(name)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    model.to(dev).eval()
    pair = first_pair(ref)
    levir = os.path.join(root, "levir-cd")
    x1, x2 = image(os.path.join(levir, "A", pair + ".png"), dev), image(os.path.join(levir, "B", pair + ".png"), dev)
    logits = model(x1, x2)
    want = torch.from_numpy(ref["logits." + pair].copy()).to(dev)
    d_logit = (logits[0] - want).abs().max().item()
    line, ok = f"{name}: max |d logits| {d_logit:.2e} (max |logit| {want.abs().max().item():.3f})", d_logit <= 1e-4
    label_png = os.path.join(levir, "label", pair + ".png")
    if "loss" in ref and os.path.exists(label_png):
        label = (read_png(label_png)[0] > 127).long().unsqueeze(0).to(dev)
        loss = opencd_models.ce_loss(logits, label)
        upstream = opencd_models.loss_fn(name)(logits, label)
        d_loss = abs(loss.item() - float(ref["loss"][0]))
        d_up = abs(upstream.item() - float(ref["loss.upstream"][0]))
        line += f", |d loss| {d_loss:.1e}, |d loss.upstream| {d_up:.1e}"
        ok &= d_loss <= 1e-5 and d_up <= 1e-5
        grads = {k[5:]: v for k, v in ref.items() if k.startswith("grad.")}
        if grads:  # README tolerance: 1e-4 of each tensor's max |grad|; zero-by-math grads absolute
            loss.backward()
            top = max(float(np.abs(g).max()) for g in grads.values())
            worst, worst_k = 0.0, ""
            for k, p in model.named_parameters():
                g = torch.from_numpy(grads[k].copy()).to(dev)
                err = (p.grad - g).abs().max().item() / max(g.abs().max().item(), 1e-3 * top)
                if err > worst:
                    worst, worst_k = err, k
            line += f", grads ({len(grads)}) worst {worst:.1e} of max|grad| at {worst_k}"
            ok &= worst <= 1e-4 and len(grads) == len(list(model.parameters()))
    print(line + ("" if ok else "  FAIL"))
    return ok


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared/fixtures")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, "
          f"attention need_weights={opencd_models.NEED_WEIGHTS}")
    results = [check(n, root, dev) for n in NAMES]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
