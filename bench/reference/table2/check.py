"""Checks a PyTorch mirror of a Table II model (bench/reference/table2/) against the upstream
Open-CD outputs in ../shared/fixtures/formula: formula weights (dumped by formula_dump.ts),
strict state_dict load, eval mode, logits of the first two LEVIR pairs. A mirror that passes
is the same architecture as upstream, so the GPU timing against it (train_step.py) compares
like with like. CPU, Debian's python3-torch:
  /usr/bin/python3 bench/reference/table2/check.py MODEL [MODEL ...]"""
import json, os, struct, subprocess, sys
import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "fixtures"))
sys.path.insert(0, HERE)
import models as table2  # noqa: E402

DT = {"F32": np.float32, "I64": np.int64, "F64": np.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], DT[v["dtype"]]).reshape(v["shape"]).copy())
    return out, header.get("__metadata__", {})


def formula_state(model):
    path = f"/tmp/table2-{model}.safetensors"
    if not os.path.exists(path):
        subprocess.run(["deno", "run", "-A", os.path.join(ROOT, "bench/reference/formula_dump.ts"),
                        os.path.join(SHARED, "formula", f"{model}_formula.json"), path], check=True)
    return read_safetensors(path)[0]


def levir(name):
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    def img(d):
        a = np.asarray(Image.open(os.path.join(SHARED, "levir-cd", d, name + ".png")).convert("RGB"), np.float32)
        return ((torch.from_numpy(a).permute(2, 0, 1) - mean) / std)[None]
    return img("A"), img("B")


def check(name):
    model = table2.build(name)
    sd = formula_state(name)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{name}: state_dict differs: missing {missing[:8]}, unexpected {unexpected[:8]}")
    model.eval()
    ref, meta = read_safetensors(os.path.join(SHARED, "formula", f"{name}_formula.reference.safetensors"))
    worst = 0.0
    with torch.no_grad():
        for pair in meta["pairs"].split(","):
            pair = pair.removesuffix(".png")
            a, b = levir(pair)
            out = table2.logits(name, model(a, b))[0]
            want = ref[f"logits.{pair}"]
            d = (out - want).abs().max().item()
            # STANet's logits are its ±100 decision (all −100 with these weights): its distance
            # map is what shows the architecture, so it is held to the reference too.
            if f"dist.{pair}" in ref:
                dist = table2._owner[name].distance(model(a, b))[0]
                d = max(d, (dist - ref[f"dist.{pair}"]).abs().max().item())
            worst = max(worst, d)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n} parameters, logits{' and distance map' if f'dist.{pair}' in ref else ''} max |diff| {worst:.3g} (bound 1e-4)", flush=True)
    return worst <= 1e-4


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(table2.MODELS)
    ok = [check(n) for n in names]
    sys.exit(0 if all(ok) else 1)
