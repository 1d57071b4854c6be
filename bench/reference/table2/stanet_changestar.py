"""Plain-PyTorch mirrors of Open-CD's STANet-Base R18 and ChangeStar 1x96 (UPerNet / FarSeg, R18)
as the JL1-CD paper's configs build them (../shared/fixtures/README.md, "The rest of Table II";
models/stanet.ts, models/changestar.ts, models/uper_head.ts, models/farseg.ts). Module names give
Open-CD's state_dict() keys, so the formula weights load strictly; check.py holds the outputs to
upstream's.

Outputs (forward(x1, x2), x* [B, 3, H, W], H and W multiples of 32):
- STANet: (logits, dist). logits is upstream's inference output: the distance map thresholded
  at 1 (d > 1 → +100, else −100) and resized bilinearly to [H, W]; dist [B, 1, H/4, W/4] is the
  feature distance ‖f_A − f_B + 1e-6‖₂ that BCL trains. Both are computed on every forward, as
  models/stanet.ts does (the ±100 map carries no gradient).
- ChangeStar: (t1t2, t2t1) logits resized to [H, W] in training or with grad enabled; (t1t2,)
  in an eval-mode no-grad forward. Upstream's ChangeStarHead runs both directions even at
  inference and predict_by_feat keeps t1t2; like the engine (models/changestar.ts) this mirror
  skips the unused t2t1 there, so inference timings compare the same work."""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
from opencd_models import BasicBlock, ConvModule, resize  # noqa: E402


# ---- ResNetV1c-18, 4 stages, strides (1, 2, 2, 2) (mmseg) ---------------------------------------
class ResNetV1c18(nn.Module):
    def __init__(self):
        super().__init__()
        conv = lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False)  # noqa: E731
        self.stem = nn.Sequential(conv(3, 32, 2), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32, 1), nn.BatchNorm2d(32),
                                  nn.ReLU(), conv(32, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def _check_size(x):
    if x.shape[-2] % 32 or x.shape[-1] % 32:
        raise ValueError(f"H and W must be multiples of 32, got {tuple(x.shape[-2:])}")


# ---- STANet-Base: STAHead with sa_mode 'None' --------------------------------------------------
class STAHead(nn.Module):
    def __init__(self, in_channels=(64, 128, 256, 512), channels=96, sa_channels=256):
        super().__init__()
        self.fpn_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels])
        self.fpn_bottleneck = nn.Sequential(
            ConvModule(channels * len(in_channels), sa_channels, 3, padding=1),
            nn.Dropout(0.5),
            ConvModule(sa_channels, sa_channels, 3, padding=1))

    def base(self, levels):
        """One date's levels (finest first) → its 1/4-scale features (base_forward)."""
        size = levels[0].shape[-2:]
        outs = [self.fpn_convs[0](levels[0])] + [resize(conv(x), size) for conv, x in
                                                 zip(list(self.fpn_convs)[1:], levels[1:])]
        return self.fpn_bottleneck(torch.cat(outs, 1))


class STANet(nn.Module):
    threshold = 1.0
    margin = 2.0

    def __init__(self):
        super().__init__()
        self.backbone = ResNetV1c18()
        self.decode_head = STAHead()

    def forward(self, x1, x2):
        _check_size(x1)
        fa = self.decode_head.base(self.backbone(x1))
        fb = self.decode_head.base(self.backbone(x2))
        # nn.PairwiseDistance(keepdim=True) over the channels (upstream moves them last):
        # ‖f_A − f_B + 1e-6‖₂. Its resize of d to level 0's size (align_corners True) is the identity.
        dist = (fa - fb + 1e-6).pow(2).sum(1, keepdim=True).sqrt()
        with torch.no_grad():  # predict_by_feat writes constants: no gradient through the map
            decided = torch.where(dist > self.threshold, torch.full_like(dist, 100.0), torch.full_like(dist, -100.0))
            logits = resize(decided, x1.shape[-2:])
        return logits, dist


def bcl_loss(d, label, margin=2.0, eps=255.0, ignore_index=255):
    """Open-CD's bcl_loss, with BCLLoss.forward's ignore_index (255) in the eps slot, as upstream."""
    d, t = d.reshape(-1), label.reshape(-1).to(d.dtype)
    mask = (t != ignore_index).to(d.dtype)
    t = t * mask
    u = 1 - t
    return (torch.sum(u * d.pow(2) * mask) / (u.sum() + eps)
            + torch.sum(t * torch.clamp(margin - d, min=0.0).pow(2)) / (t.sum() + eps))


# ---- mmseg UPerHead (classifier an identity) ----------------------------------------------------
class UPerHead(nn.Module):
    def __init__(self, in_channels=(64, 128, 256, 512), channels=128, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        last = in_channels[-1]
        self.pool_scales = pool_scales
        self.psp_modules = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(last, channels, 1))
                                          for s in pool_scales])
        self.bottleneck = ConvModule(last + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)

    def forward(self, levels):
        x = levels[-1]
        psp = self.bottleneck(torch.cat([x] + [resize(m(x), x.shape[-2:]) for m in self.psp_modules], 1))
        lat = [c(levels[i]) for i, c in enumerate(self.lateral_convs)] + [psp]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + resize(lat[i], lat[i - 1].shape[-2:])
        outs = [c(lat[i]) for i, c in enumerate(self.fpn_convs)] + [lat[-1]]
        size = outs[0].shape[-2:]
        return self.fpn_bottleneck(torch.cat([outs[0]] + [resize(o, size) for o in outs[1:]], 1))


# ---- FarSeg: FarSegFPN neck + FarSegHead (classifier an identity) ------------------------------
class PlainConv(nn.Module):
    """mmcv ConvModule with norm and activation None: a conv with bias, at `.conv`."""

    def __init__(self, cin, cout, k, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding)

    def forward(self, x):
        return self.conv(x)


class FarSegFPN(nn.Module):
    """mmseg FPN (nearest top-down, no extra convs) + the scene embedding (global average of the
    1/32 level). One date's levels → [p0, p1, p2, p3, scene]."""

    def __init__(self, in_channels=(64, 128, 256, 512), out=256):
        super().__init__()
        self.lateral_convs = nn.ModuleList([PlainConv(c, out, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([PlainConv(out, out, 3, padding=1) for _ in in_channels])

    def forward(self, levels):
        lat = [c(levels[i]) for i, c in enumerate(self.lateral_convs)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        outs = [c(lat[i]) for i, c in enumerate(self.fpn_convs)]
        return outs + [F.adaptive_avg_pool2d(levels[-1], 1)]


class FSRelation(nn.Module):
    def __init__(self, scene_channels=512, in_channels=(256, 256, 256, 256), out=256):
        super().__init__()
        self.scene_encoder = nn.ModuleList([nn.Sequential(nn.Conv2d(scene_channels, out, 1), nn.ReLU(True),
                                                          nn.Conv2d(out, out, 1)) for _ in in_channels])
        self.content_encoders = nn.ModuleList([nn.Sequential(ConvModule(c, out, 1)) for c in in_channels])
        self.feature_reencoders = nn.ModuleList([nn.Sequential(ConvModule(c, out, 1)) for c in in_channels])

    def forward(self, scene, feats):
        sf = [op(scene) for op in self.scene_encoder]
        cf = [op(p) for op, p in zip(self.content_encoders, feats)]
        rel = [torch.sigmoid((s * c).sum(dim=1, keepdim=True)) for s, c in zip(sf, cf)]
        pf = [op(p) for op, p in zip(self.feature_reencoders, feats)]
        return [r * p for r, p in zip(rel, pf)]


class LightWeightDecoder(nn.Module):
    def __init__(self, cin=256, cout=128, ups=(0, 1, 2, 3)):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(*[nn.Sequential(ConvModule(cout if j else cin, cout, 3, padding=1),
                                          nn.UpsamplingBilinear2d(scale_factor=2) if n else nn.Identity())
                            for j in range(max(n, 1))])
            for n in ups])

    def forward(self, feats):
        outs = [blk(x) for blk, x in zip(self.blocks, feats)]
        return sum(outs) / 4.0


class FarSegHead(nn.Module):
    def __init__(self):
        super().__init__()
        self._fsr = FSRelation()
        self._decoder = LightWeightDecoder()

    def forward(self, inputs):
        return self._decoder(self._fsr(inputs[-1], inputs[:-1]))


# ---- ChangeStar 1x96 ----------------------------------------------------------------------------
class ChangeStarHead(nn.Module):
    """Open-CD's ChangeStarHead, num_convs 1; conv_seg after BaseDecodeHead's Dropout2d(0.1)."""

    def __init__(self, seg_head, seg_channels=128, inner=96):
        super().__init__()
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(inner, 1, 1)  # built first, as BaseDecodeHead does
        self.seg_head = seg_head
        self.changemixin = nn.Module()
        self.changemixin.convs = nn.Sequential(nn.Sequential(
            nn.Conv2d(2 * seg_channels, inner, 3, 1, 1), nn.BatchNorm2d(inner), nn.ReLU(True)))

    def direction(self, p, q):
        return self.conv_seg(self.dropout(self.changemixin.convs(torch.cat([p, q], 1))))


class ChangeStar(nn.Module):
    def __init__(self, variant):
        super().__init__()
        self.variant = variant
        self.backbone = ResNetV1c18()
        if variant == "farseg":
            self.neck = FarSegFPN()
            seg = FarSegHead()
        else:
            seg = UPerHead()
        self.decode_head = ChangeStarHead(seg)

    def _date(self, x):
        levels = self.backbone(x)
        if self.variant == "farseg":
            levels = self.neck(levels)
        return self.decode_head.seg_head(levels)

    def forward(self, x1, x2):
        _check_size(x1)
        xa, xb = self._date(x1), self._date(x2)
        size = x1.shape[-2:]
        t12 = resize(self.decode_head.direction(xa, xb), size)
        if not (self.training or torch.is_grad_enabled()):
            return (t12,)
        return t12, resize(self.decode_head.direction(xb, xa), size)


# ---- losses --------------------------------------------------------------------------------------
def bce_loss(logit, label, ignore_index=255):
    """mmseg CrossEntropyLoss(use_sigmoid=True) on [B, 1, H, W]: ignored pixels weigh 0, the mean
    runs over all pixels (avg_non_ignore False)."""
    z = logit[:, 0]
    valid = (label != ignore_index).to(z.dtype)
    t = label.to(z.dtype) * valid
    return (F.binary_cross_entropy_with_logits(z, t, reduction="none") * valid).mean()


def dice_loss(logit, label, eps=1e-3):
    """mmseg DiceLoss(use_sigmoid=True) on 1-channel logits: g is the one-hot target's class-0
    channel (label == 0 after clamping to [0, 1]), per-image dice, mean over the batch."""
    p = torch.sigmoid(logit).flatten(1)
    g = (label.clamp(0, 1) == 0).to(p.dtype).flatten(1)
    d = 2 * (p * g).sum(1) / ((p * p).sum(1) + eps + (g * g).sum(1) + eps)
    return (1 - d).mean()


def _stanet_loss(out, label):
    dist = out[1]
    return bcl_loss(resize(dist, label.shape[-2:]), label, margin=STANet.margin)


def _changestar_loss(dice):
    def f(out, label):
        t12, t21 = out
        loss = bce_loss(t12, label) + bce_loss(t21, label)
        if dice:
            loss = loss + dice_loss(t12, label) + dice_loss(t21, label)
        return loss
    return f


MODELS = {
    "stanet_base_r18": STANet,
    "changestar_upernet_r18": lambda: ChangeStar("upernet"),
    "changestar_farseg_r18": lambda: ChangeStar("farseg"),
}
# models/registry.ts recipes: (lr, weight decay), AdamW.
OPTIM = {
    "stanet_base_r18": (1e-3, 5e-2),
    "changestar_upernet_r18": (1e-3, 5e-2),
    "changestar_farseg_r18": (1e-3, 1e-2),
}
_LOSSES = {
    "stanet_base_r18": _stanet_loss,
    "changestar_upernet_r18": _changestar_loss(False),
    "changestar_farseg_r18": _changestar_loss(True),
}


def loss_fn(name):
    return _LOSSES[name]


def logits(name, out):
    """[B, 1, H, W]: STANet's ±100 map, ChangeStar's t1t2 logit (inference mode 't1t2')."""
    return out[0]


def distance(out):
    """STANet's distance map [B, 1, H/4, W/4] (the parity quantity, README: compare `dist`)."""
    return out[1]
