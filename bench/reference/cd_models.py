"""PyTorch versions of the project's change-detection models, for side-by-side timing on the GPU
machine. Written for this project from the papers and the parameter layouts of the authors'
checkpoints (the state_dict names match ../shared/fixtures/weights), not copied. Initialisation
follows each model's original code (FC: PyTorch defaults; SNUNet: Open-CD's; TinyCD: torchvision's
EfficientNet), so seeded models of the engine and of this file start from the same distributions
(checked per tensor by bench/init_compare.ts)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- FC-EF / FC-Siam-conc / FC-Siam-diff (Daudt et al. 2018) --------------------------------
def _enc(self, cin):
    chans = [(cin, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 128), (128, 128), (128, 128)]
    names = ["11", "12", "21", "22", "31", "32", "33", "41", "42", "43"]
    for n, (i, o) in zip(names, chans):
        setattr(self, "conv" + n, nn.Conv2d(i, o, 3, padding=1))
        setattr(self, "bn" + n, nn.BatchNorm2d(o))
    return names


class FC(nn.Module):
    """variant: 'ef' (early fusion), 'conc' (concatenate both skips), 'diff' (|skip1 - skip2|)."""

    def __init__(self, variant="diff", cin=3, classes=2):
        super().__init__()
        self.variant = variant
        self.names = _enc(self, cin * 2 if variant == "ef" else cin)
        mult = {"ef": 2, "diff": 2, "conc": 3}[variant]
        for n, c in (("4", 128), ("3", 64), ("2", 32), ("1", 16)):
            setattr(self, "upconv" + n, nn.ConvTranspose2d(c, c, 3, padding=1, stride=2, output_padding=1))
        dec = [("43d", 128 * mult, 128), ("42d", 128, 128), ("41d", 128, 64), ("33d", 64 * mult, 64), ("32d", 64, 64),
               ("31d", 64, 32), ("22d", 32 * mult, 32), ("21d", 32, 16), ("12d", 16 * mult, 16)]
        for n, i, o in dec:
            setattr(self, "conv" + n, nn.ConvTranspose2d(i, o, 3, padding=1))
            setattr(self, "bn" + n, nn.BatchNorm2d(o))
        self.conv11d = nn.ConvTranspose2d(16, classes, 3, padding=1)
        self.drop = nn.Dropout2d(0.2)

    def _block(self, n, x):
        return self.drop(F.relu(getattr(self, "bn" + n)(getattr(self, "conv" + n)(x))))

    def _encode(self, x):
        skips = []
        stages = [["11", "12"], ["21", "22"], ["31", "32", "33"], ["41", "42", "43"]]
        for st in stages:
            for n in st:
                x = self._block(n, x)
            skips.append(x)
            x = F.max_pool2d(x, 2, 2)
        return x, skips

    def forward(self, a, b):
        if self.variant == "ef":
            x, s1 = self._encode(torch.cat((a, b), 1))
            s2 = None
        else:
            _, s1 = self._encode(a)
            x, s2 = self._encode(b)
        dec = [("4", ["43d", "42d", "41d"]), ("3", ["33d", "32d", "31d"]), ("2", ["22d", "21d"]), ("1", ["12d"])]
        for k, (up, convs) in enumerate(dec):
            x = getattr(self, "upconv" + up)(x)
            skip = s1[3 - k]
            x = F.pad(x, (0, skip.shape[3] - x.shape[3], 0, skip.shape[2] - x.shape[2]), mode="replicate")
            if self.variant == "ef":
                x = torch.cat((x, skip), 1)
            elif self.variant == "conc":
                x = torch.cat((x, skip, s2[3 - k]), 1)
            else:
                x = torch.cat((x, torch.abs(skip - s2[3 - k])), 1)
            for n in convs:
                x = self._block(n, x)
        return F.log_softmax(self.conv11d(x), dim=1)


# ---- TinyCD (Codegoni et al. 2023) -----------------------------------------------------------
class PixelwiseLinear(nn.Module):
    def __init__(self, fin, fout, last=None):
        super().__init__()
        n = len(fin)
        self._linears = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(fin[i], fout[i], 1), nn.PReLU() if i < n - 1 or last is None else last)
            for i in range(n)])

    def forward(self, x):
        return self._linears(x)


class MixingBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self._convmix = nn.Sequential(nn.Conv2d(cin, cout, 3, groups=cout, padding=1), nn.PReLU(), nn.InstanceNorm2d(cout))

    def forward(self, x, y):
        m = torch.stack((x, y), dim=2).reshape(x.shape[0], -1, x.shape[2], x.shape[3])
        return self._convmix(m)


class MixingMask(nn.Module):
    def __init__(self, cin, cout, fin, fout):
        super().__init__()
        self._mixing = MixingBlock(cin, cout)
        self._linear = PixelwiseLinear(fin, fout)

    def forward(self, x, y):
        return self._linear(self._mixing(x, y))


class UpMask(nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self._convolution = nn.Sequential(
            nn.Conv2d(nin, nin, 3, 1, groups=nin, padding=1), nn.PReLU(), nn.InstanceNorm2d(nin),
            nn.Conv2d(nin, nout, 1), nn.PReLU(), nn.InstanceNorm2d(nout))

    def forward(self, x, y):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self._convolution(x * y)


class TinyCD(nn.Module):
    def __init__(self):
        super().__init__()
        import torchvision  # only TinyCD needs it: CPU checks of the others run without it

        feats = torchvision.models.efficientnet_b4(weights=None).features
        self._backbone = nn.ModuleList([feats[i] for i in range(4)])
        self._first_mix = MixingMask(6, 3, [3, 10, 5], [10, 5, 1])
        self._mixing_mask = nn.ModuleList([MixingMask(48, 24, [24, 12, 6], [12, 6, 1]),
                                           MixingMask(64, 32, [32, 16, 8], [16, 8, 1]), MixingBlock(112, 56)])
        self._up = nn.ModuleList([UpMask(56, 64), UpMask(64, 64), UpMask(64, 32)])
        self._classify = PixelwiseLinear([32, 16, 8], [16, 8, 1], nn.Sigmoid())

    def forward(self, a, b):
        feats = [self._first_mix(a, b)]
        for k, layer in enumerate(self._backbone):
            a, b = layer(a), layer(b)
            if k:
                feats.append(self._mixing_mask[k - 1](a, b))
        x = feats[-1]
        for i, j in enumerate(range(-2, -5, -1)):
            x = self._up[i](x, feats[j])
        return self._classify(x)


# ---- SNUNet-CD c16 with ECAM (Fang et al. 2021), as Open-CD builds it ------------------------
# Mirrors models/snunet.ts (checked there against Open-CD's outputs): residual nested blocks,
# A's encoder to 1/8 and B's to 1/16, column-1 lifts from B's path only, 2x2 stride-2 transposed
# convs, ECAM, then Open-CD's FCN head without convs (Dropout2d(0.1), 1x1 classifier).
# NOT YET RUN on a GPU (written when no device time was left); its constructor arithmetic gives
# 3,012,178 parameters, as Open-CD's model and models/snunet.ts.
class _Nested(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        identity = self.conv1(x)
        y = self.conv2(F.relu(self.bn1(identity)))
        return F.relu(self.bn2(y) + identity)


class _ChannelAttention(nn.Module):
    def __init__(self, c, ratio):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(c // ratio, c, 1, bias=False)

    def forward(self, x):
        def mlp(p):
            return self.fc2(F.relu(self.fc1(p)))
        return torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))


class _Up(nn.Module):
    """Open-CD's `up` wrapper (state_dict names Up{i}_{j}.up.*, as models/snunet.ts)."""

    def __init__(self, c):
        super().__init__()
        self.up = nn.ConvTranspose2d(c, c, 2, stride=2)

    def forward(self, x):
        return self.up(x)


class SNUNet(nn.Module):
    def __init__(self, cin=3, base=16, classes=2):
        super().__init__()
        f = [base << i for i in range(5)]
        for j in range(5):
            for i in range(5 - j):
                c = (cin if i == 0 else f[i - 1]) if j == 0 else f[i] * (j + 1) + f[i + 1]
                setattr(self, f"conv{i}_{j}", _Nested(c, f[i]))
                if i > 0:
                    setattr(self, f"Up{i}_{j}", _Up(f[i]))
        self.ca = _ChannelAttention(f[0] * 4, 16)
        self.ca1 = _ChannelAttention(f[0], 4)
        self.drop = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(f[0] * 4, classes, 1)
        # Open-CD's initialisation (as models/snunet.ts): the backbone's Conv2d weights (ECAM's
        # included, transposed convs not) kaiming_normal_(fan_out, relu), biases left as PyTorch
        # draws them; mmseg's decode head: conv_seg N(0, 0.01), bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.conv_seg:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def _encode(self, x, depth):
        out = []
        for i in range(depth):
            if i > 0:
                x = F.max_pool2d(x, 2, 2)
            x = getattr(self, f"conv{i}_0")(x)
            out.append(x)
        return out

    def forward(self, a, b):
        xa, xb = self._encode(a, 4), self._encode(b, 5)
        x = [[t] for t in xb]
        for k in range(1, 5):  # anti-diagonals, deepest node first
            for i in range(k - 1, -1, -1):
                j = k - i
                lifted = getattr(self, f"Up{i + 1}_{j - 1}")(x[i + 1][j - 1])
                x[i].append(getattr(self, f"conv{i}_{j}")(torch.cat([xa[i], xb[i], *x[i][1:j], lifted], 1)))
        outs = x[0][1:]
        out = torch.cat(outs, 1)
        ca1 = self.ca1(outs[0] + outs[1] + outs[2] + outs[3])
        y = self.ca(out) * (out + ca1.repeat(1, 4, 1, 1))
        # log-probabilities, as the FC models return, so train_step.py's NLL is the CE of logits
        return F.log_softmax(self.conv_seg(self.drop(y)), 1)


def build(name):
    return {"fc_ef": lambda: FC("ef"), "fc_siam_conc": lambda: FC("conc"), "fc_siam_diff": lambda: FC("diff"),
            "tinycd": TinyCD, "snunet_c16": SNUNet}[name]()
