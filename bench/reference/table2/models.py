"""PyTorch mirrors of the rest of Table II as Open-CD builds them (issue 23), for timing PyTorch
eager / torch.compile beside the engine on the GPU machine, where mmseg / Open-CD are not
installed. Each family lives in its own file and exposes MODELS (name → builder), OPTIM
(name → (lr, weight decay), the registry's recipe), loss_fn(name) → f(out, label) (the
configured training loss, auxiliary heads included) and logits(name, out) → the decision logits
[B, C, H, W] of an eval-mode forward. check.py holds every mirror to the upstream outputs."""
import importlib

FAMILIES = ["changer", "stanet_changestar", "vgg", "hanet_lightcdnet"]
_owner = {}
for fam in FAMILIES:
    try:
        mod = importlib.import_module(fam)
    except ModuleNotFoundError as e:  # a family not written yet
        if e.name != fam:
            raise
        continue
    for name in mod.MODELS:
        _owner[name] = mod
MODELS = sorted(_owner)
OPTIM = {n: _owner[n].OPTIM[n] for n in MODELS}


def build(name):
    return _owner[name].MODELS[name]()


def loss_fn(name):
    return _owner[name].loss_fn(name)


def logits(name, out):
    return _owner[name].logits(name, out)
