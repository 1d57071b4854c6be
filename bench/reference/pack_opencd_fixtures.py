"""Packs what check_opencd.py needs from ../shared/fixtures into a folder small enough to travel to
the GPU machine (the full reference files hold grads and features, ~52 MB): the three weight files
as they are, each reference file cut to the first levir pair's logits plus the loss scalars, and
that pair's A/B/label PNGs, in the same layout as fixtures/. numpy only (runs where torch is not).
Usage: python3 bench/reference/pack_opencd_fixtures.py OUT_DIR [--fixtures ../shared/fixtures]"""
import argparse
import json
import os
import shutil
import struct
import numpy as np

NAMES = ["bit_r18", "changeformer_mit_b0", "changer_ex_mit_b0"]
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """-> ({name: np.ndarray}, metadata): 8-byte little-endian header length, JSON header, data."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], DTYPES[v["dtype"]]).reshape(v["shape"])
    return out, meta


def write_safetensors(path, tensors, meta=None):
    inv = {np.dtype(t): s for s, t in DTYPES.items()}
    header, off = {"__metadata__": meta} if meta else {}, 0
    for k, v in tensors.items():
        header[k] = {"dtype": inv[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
        off += v.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for v in tensors.values():
            f.write(np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes())


def first_pair(ref):
    return sorted(k[len("logits."):] for k in ref if k.startswith("logits."))[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
    a = p.parse_args()
    os.makedirs(os.path.join(a.out, "weights"), exist_ok=True)
    pairs = set()
    for name in NAMES:
        src = os.path.join(a.fixtures, "weights", name + "_seed0")
        shutil.copyfile(src + ".safetensors", os.path.join(a.out, "weights", name + "_seed0.safetensors"))
        ref, meta = read_safetensors(src + ".reference.safetensors")
        pair = first_pair(ref)
        pairs.add(pair)
        keep = {k: ref[k] for k in ("logits." + pair, "loss", "loss.upstream") if k in ref}
        write_safetensors(os.path.join(a.out, "weights", name + "_seed0.reference.safetensors"), keep, meta)
    for pair in pairs:
        for d in ("A", "B", "label"):
            os.makedirs(os.path.join(a.out, "levir-cd", d), exist_ok=True)
            shutil.copyfile(os.path.join(a.fixtures, "levir-cd", d, pair + ".png"),
                            os.path.join(a.out, "levir-cd", d, pair + ".png"))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(a.out) for f in fs)
    print(f"packed {len(NAMES)} models, pair(s) {sorted(pairs)} into {a.out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
