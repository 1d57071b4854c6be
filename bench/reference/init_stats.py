"""Per-tensor mean / std / max |x| of cd_models.py's seeded initialisation, as JSON, for
bench/init_compare.ts (issue 22: do the engine's create(seed) and PyTorch start from the same
distributions?). TinyCD needs torchvision; the other models do not.
Usage: python3 bench/reference/init_stats.py OUT.json fc_ef fc_siam_conc fc_siam_diff snunet_c16"""
import json, os, sys
import torch

sys.path.insert(0, os.path.dirname(__file__))
from cd_models import build  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = {}
    for name in sys.argv[2:]:
        torch.manual_seed(0)
        sd = build(name).state_dict()
        out[name] = {k: [v.mean().item(), v.std().item() if v.numel() > 1 else 0.0, v.abs().max().item(),
                         v.numel()] for k, v in sd.items() if v.is_floating_point()}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
