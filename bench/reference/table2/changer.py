"""Plain-PyTorch mirrors of Open-CD's "ChangeFormer" MiT-b1 and ChangerEx with MiT-b1, ResNetV1c-18
and ResNeSt-50 encoders (the JL1-CD paper's Table II; ../shared/fixtures/formula), for timing
beside the engine where mmseg / Open-CD are not installed. The MiT, SegFormer head, Changer head,
exchange layers and losses are bench/reference/opencd_models.py's (b0 there), parameterised to
b1's widths; the ResNet-18 (4 stages) and ResNeSt-50 encoders are written here from mmseg v1.2.2.
Module names make state_dict() keys equal upstream's (the formula manifests'); forward(x1, x2)
returns the logits [B, 2, H, W] at input resolution. Checked by check.py in this folder."""
import os
import sys

import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
import opencd_models as oc  # noqa: E402

MIT_B1_DIMS = (64, 128, 320, 512)


# ---- "ChangeFormer" MiT-b1: SiamEncoderDecoder + MiT-b1 + concat neck + SegformerHead(256) -----
class ChangeFormerB1(oc.ChangeFormer):
    def __init__(self):
        nn.Module.__init__(self)
        self.backbone = oc.MiT(dims=MIT_B1_DIMS)
        self.decode_head = oc.SegformerHead(cins=tuple(2 * d for d in MIT_B1_DIMS), ch=256)


# ---- ChangerEx backbones: stage(i, x) is what DIEncoderDecoder runs per date between exchanges --
class MiTB1(oc.MiT):
    def __init__(self):
        super().__init__(dims=MIT_B1_DIMS)


class ResNetV1c18(nn.Module):
    """mmseg ResNetV1c-18, 4 stages, strides (1, 2, 2, 2) (IA_ResNetV1c's). stage(0) includes the
    deep stem and its max-pool, so ChangerEx runs stem + layer1 on A, then on B: each BN sees one
    date's batch in training, as upstream's per-date calls."""

    def __init__(self):
        super().__init__()
        conv = lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False)  # noqa: E731
        self.stem = nn.Sequential(conv(3, 32, 2), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32, 1), nn.BatchNorm2d(32),
                                  nn.ReLU(), conv(32, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        cin = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(oc.BasicBlock(cin, planes, stride),
                                                         oc.BasicBlock(planes, planes, 1)))
            cin = planes

    def stage(self, i, x):
        if i == 0:
            x = F.max_pool2d(self.stem(x), 3, 2, 1)
        return getattr(self, f"layer{i + 1}")(x)


class SplitAttentionConv2d(nn.Module):
    """mmseg ResNeSt SplitAttentionConv2d, radix 2, groups 1, reduction 4, stride 1."""

    def __init__(self, c, radix=2, reduction=4):
        super().__init__()
        inter = max(c * radix // reduction, 32)
        self.radix = radix
        self.conv = nn.Conv2d(c, c * radix, 3, 1, 1, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(c * radix)
        self.fc1 = nn.Conv2d(c, inter, 1)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, c * radix, 1)

    def forward(self, x):
        x = F.relu(self.bn0(self.conv(x)))
        b = x.shape[0]
        splits = x.view(b, self.radix, -1, *x.shape[2:])
        gap = F.adaptive_avg_pool2d(splits.sum(dim=1), 1)
        gap = F.relu(self.bn1(self.fc1(gap)))
        # RSoftmax (groups 1): [B, radix, C] softmax over the radix
        att = F.softmax(self.fc2(gap).view(b, 1, self.radix, -1).transpose(1, 2), dim=1)
        att = att.reshape(b, -1).view(b, self.radix, -1, 1, 1)
        return (att * splits).sum(dim=1)


class ResNeStBottleneck(nn.Module):
    """mmseg ResNeSt Bottleneck (avd, avd_first False): conv1/bn1, split-attention conv2 at stride
    1, AvgPool2d(3, s, 1) after it when strided, conv3/bn3; shortcut avg_down:
    AvgPool2d(s, s, ceil_mode, count_include_pad False) → 1×1 conv → BN (downsample.0/1/2)."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = SplitAttentionConv2d(planes)
        if stride > 1:
            self.avd_layer = nn.AvgPool2d(3, stride, padding=1)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if self.stride > 1:
            y = self.avd_layer(y)
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if hasattr(self, "downsample") else x))


class ResNeSt50(ResNetV1c18):
    """mmseg ResNeSt-50 (IA_ResNeSt): ResNetV1d's deep stem (stem 64), Bottlenecks 3/4/6/3 with
    planes 64…512, strides (1, 2, 2, 2)."""

    def __init__(self):
        nn.Module.__init__(self)
        conv = lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False)  # noqa: E731
        self.stem = nn.Sequential(conv(3, 32, 2), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32, 1), nn.BatchNorm2d(32),
                                  nn.ReLU(), conv(32, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            blocks = [ResNeStBottleneck(cin if j == 0 else planes * 4, planes, 2 if (j == 0 and i > 0) else 1)
                      for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = planes * 4


# ---- ChangerEx: DIEncoderDecoder, exchanges (none, spatial, channel, channel), Changer head -----
class ChangerExVariant(oc.ChangerEx):
    """opencd_models.ChangerEx's forward (each date through each stage in turn, the exchange, the
    head on cat(A', B') per level, ×4 resize) with another backbone and head width."""

    def __init__(self, backbone, levels, channels):
        nn.Module.__init__(self)
        self.backbone = backbone
        self.decode_head = oc.ChangerHead(cins=levels, ch=channels)
        self.exchange = [None, oc.spatial_exchange, oc.channel_exchange, oc.channel_exchange]


MODELS = {
    "changeformer_mit_b1": ChangeFormerB1,
    "changer_ex_mit_b1": lambda: ChangerExVariant(MiTB1(), MIT_B1_DIMS, 128),
    "changer_ex_r18": lambda: ChangerExVariant(ResNetV1c18(), (64, 128, 256, 512), 128),
    "changer_ex_s50": lambda: ChangerExVariant(ResNeSt50(), (256, 512, 1024, 2048), 256),
}
# models/registry.ts recipes (AdamW, betas 0.9 / 0.999): lr, weight decay. The MiT models also
# have paramwise keys (norm / pos_block decay ×0, head lr ×10), not expressed here.
OPTIM = {
    "changeformer_mit_b1": (6e-5, 1e-2),
    "changer_ex_mit_b1": (1e-4, 1e-2),
    "changer_ex_r18": (5e-3, 5e-2),
    "changer_ex_s50": (5e-3, 5e-2),
}
# recipe.loss: ChangeFormer plain CE; every ChangerEx CE with OHEM (0.7, 100000). No auxiliary heads.
_LOSS = {
    "changeformer_mit_b1": oc.ce_loss,
    "changer_ex_mit_b1": oc.ohem_ce_loss,
    "changer_ex_r18": oc.ohem_ce_loss,
    "changer_ex_s50": oc.ohem_ce_loss,
}


def loss_fn(name):
    return _LOSS[name]


def logits(name, out):
    if name not in MODELS:
        raise KeyError(name)
    return out
