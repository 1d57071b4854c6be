"""Plain-PyTorch mirrors of Open-CD's IFN (VGG-16) and CGNet (VGG-16-BN), Table II rows
`ifn_vgg16` and `cgnet_vgg16`, for timing beside the engine on the GPU machine (no mmseg / mmcv /
Open-CD / torchvision there). Written from ../shared/fixtures/README.md ("The rest of Table II":
ifn_vgg16, cgnet_vgg16), models/ifn.ts and models/cgnet.ts, and a reading of Open-CD's
opencd/models/backbones/{ifn,cgnet}.py. Module names give upstream's state_dict() keys
(backbone.*), so load_state_dict(strict=True) of the formula weights works.

- IFN: DIEncoderDecoder(IFN backbone, IdentityHead, DSIdentityHead). forward(x1, x2) returns
  (out1, …, out5), 1 channel each at 1/16 … 1/1, as upstream's backbone always computes them;
  out5 is the change logit (threshold 0.3 upstream), out1…out4 the deep supervision. The VGG
  encoder (`encoder1 = encoder2`, one module under two names) runs under torch.no_grad().
- CGNet: DIEncoderDecoder(CGNet backbone, IdentityHead ×2). forward(x1, x2) returns
  (change prior, final), both resized to the input (align_corners True); final is the logit.
  The VGG-16-BN slices keep torchvision's in-place ReLUs, so (as upstream) the ReLU opening
  down2/3/4 overwrites down1/2/3's output: layer1…layer3 are post-ReLU, layer4 is the bare BN.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# torchvision's VGG-16 configuration "D" (conv widths, "M" = 2×2 max-pool).
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features(batch_norm):
    """torchvision's `vgg16(_bn)().features`: same layer types and indices, so the same
    state_dict names (conv 3×3 padding 1 with bias, [BN,] ReLU(inplace=True), MaxPool2d(2, 2))."""
    layers, cin = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(cin, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    return nn.Sequential(*layers)


# ---- IFN (opencd/models/backbones/ifn.py) ----------------------------------------------------
class VGG16FeaturePicker(nn.Module):
    """features[0:30] of VGG-16 as a ModuleList; the outputs at indices 3, 8, 15, 22, 29 (ReLUs)."""

    def __init__(self, indices=(3, 8, 15, 22, 29)):
        super().__init__()
        self.features = nn.ModuleList(list(vgg16_features(False))[:30]).eval()
        self.indices = set(indices)

    def forward(self, x):
        picked = []
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in self.indices:
                picked.append(x)
        return picked


def conv2d_bn(cin, cout):
    """conv 3×3 (bias) → PReLU (one slope) → BN; use_dropout is False in IFN."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.PReLU(), nn.BatchNorm2d(cout))


class BasicConv(nn.Module):
    """IFN's BasicConv: [ZeroPad2d(k // 2) for k ≥ 2] + conv (padding 0) [+ ReLU], under `seq`."""

    def __init__(self, cin, cout, kernel, bias, act=False):
        super().__init__()
        seq = [nn.ZeroPad2d(kernel // 2)] if kernel >= 2 else []
        seq.append(nn.Conv2d(cin, cout, kernel, stride=1, padding=0, bias=bias))
        if act:
            seq.append(nn.ReLU())
        self.seq = nn.Sequential(*seq)

    def forward(self, x):
        return self.seq(x)


class ChannelAttention(nn.Module):
    def __init__(self, cin, ratio=8):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = BasicConv(cin, cin // ratio, 1, bias=False, act=True)
        self.fc2 = BasicConv(cin // ratio, cin, 1, bias=False)

    def forward(self, x):
        avg_out = self.fc2(self.fc1(self.avg_pool(x)))
        max_out = self.fc2(self.fc1(self.max_pool(x)))
        return torch.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
    def __init__(self, kernel=7):
        super().__init__()
        self.conv = BasicConv(2, 1, kernel, bias=False)

    def forward(self, x):
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out = torch.max(x, dim=1, keepdim=True)[0]
        return torch.sigmoid(self.conv(torch.cat([avg_out, max_out], dim=1)))


class IFNBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        # one module under two names, as upstream (`self.encoder1 = self.encoder2 = ...`)
        self.encoder1 = self.encoder2 = VGG16FeaturePicker()
        for k in range(1, 6):
            setattr(self, f"sa{k}", SpatialAttention())
        # built in upstream's order (hence the state_dict's): ca_k, [bn_ca_k], conv blocks,
        # bn_sa_k, the 1×1 out conv, trans_conv_k. ca1, bn_ca1 and bn_ca2 are never called.
        plan = [([1024, 512, 512], 1024, 512), ([1536, 512, 256, 256], 1536, 256),
                ([768, 256, 128, 128], 768, 128), ([384, 128, 64, 64], 384, 64),
                ([192, 64, 32, 16], 192, None)]
        for k, (convs, ca, up) in enumerate(plan, 1):
            setattr(self, f"ca{k}", ChannelAttention(ca))
            if k <= 2:
                setattr(self, f"bn_ca{k}", nn.BatchNorm2d(ca))
            for j in range(len(convs) - 1):
                setattr(self, f"o{k}_conv{j + 1}", conv2d_bn(convs[j], convs[j + 1]))
            setattr(self, f"bn_sa{k}", nn.BatchNorm2d(convs[-1]))
            setattr(self, f"o{k}_conv{len(convs)}", BasicConv(convs[-1], 1, 1, bias=True))
            if up is not None:
                setattr(self, f"trans_conv{k}", nn.ConvTranspose2d(up, up, kernel_size=2, stride=2))
        self.n_convs = [len(p[0]) - 1 for p in plan]

    def forward(self, t1, t2):
        with torch.no_grad():
            self.encoder1.eval(), self.encoder2.eval()
            f1 = self.encoder1(t1)
            f2 = self.encoder2(t2)
        outs, x = [], None
        for k in range(1, 6):
            t = 5 - k  # taps 29, 22, 15, 8, 3
            if x is None:
                x = torch.cat([f1[t], f2[t]], dim=1)
            else:
                x = torch.cat([getattr(self, f"trans_conv{k - 1}")(x), f1[t], f2[t]], dim=1)
                x = getattr(self, f"ca{k}")(x) * x
            for j in range(self.n_convs[k - 1]):
                x = getattr(self, f"o{k}_conv{j + 1}")(x)
            x = getattr(self, f"sa{k}")(x) * x
            x = getattr(self, f"bn_sa{k}")(x)
            outs.append(getattr(self, f"o{k}_conv{self.n_convs[k - 1] + 1}")(x))
        return tuple(outs)


class IFN(nn.Module):
    """forward(x1, x2) → (out1 … out5); out5 [B, 1, H, W] is the logit (IdentityHead's resize
    to the input is the identity here: out5 is already full size)."""

    def __init__(self):
        super().__init__()
        self.backbone = IFNBackbone()

    def forward(self, x1, x2):
        return self.backbone(x1, x2)


# ---- CGNet (opencd/models/backbones/cgnet.py) ------------------------------------------------
class BasicConv2d(nn.Module):
    """conv (no bias) → BN → ReLU(inplace)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ChangeGuideModule(nn.Module):
    """x + γ·(V·Aᵀ), A = softmax(QᵀK) without scaling, Q/K/V scaled by 1 + sigmoid(cm)."""

    def __init__(self, dim):
        super().__init__()
        self.chanel_in = dim
        self.query_conv = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(dim, dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, guiding_map0):
        b, c, h, w = x.size()
        guiding_map = torch.sigmoid(F.interpolate(guiding_map0, x.size()[2:], mode="bilinear", align_corners=True))
        query = self.query_conv(x) * (1 + guiding_map)
        proj_query = query.view(b, -1, w * h).permute(0, 2, 1)
        key = self.key_conv(x) * (1 + guiding_map)
        proj_key = key.view(b, -1, w * h)
        value = self.value_conv(x) * (1 + guiding_map)
        proj_value = value.view(b, -1, w * h)
        attention = self.softmax(torch.bmm(proj_query, proj_key))
        out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class CGNetBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        features = vgg16_features(True)
        # nn.Sequential slices keep the original indices as names (down1.7.weight, …)
        self.inc = features[:5]
        self.down1 = features[5:12]
        self.down2 = features[12:22]
        self.down3 = features[22:32]
        self.down4 = features[32:42]
        self.conv_reduce_1 = BasicConv2d(128 * 2, 128, 3, 1, 1)
        self.conv_reduce_2 = BasicConv2d(256 * 2, 256, 3, 1, 1)
        self.conv_reduce_3 = BasicConv2d(512 * 2, 512, 3, 1, 1)
        self.conv_reduce_4 = BasicConv2d(512 * 2, 512, 3, 1, 1)
        # built but never called upstream (no gradient)
        self.up_layer4 = BasicConv2d(512, 512, 3, 1, 1)
        self.up_layer3 = BasicConv2d(512, 512, 3, 1, 1)
        self.up_layer2 = BasicConv2d(256, 256, 3, 1, 1)
        self.upsample2x = nn.UpsamplingBilinear2d(scale_factor=2)
        self.decoder = nn.Sequential(BasicConv2d(512, 64, 3, 1, 1), nn.Conv2d(64, 1, 3, 1, 1))
        self.decoder_final = nn.Sequential(BasicConv2d(128, 64, 3, 1, 1), nn.Conv2d(64, 1, 1))
        self.cgm_2 = ChangeGuideModule(256)
        self.cgm_3 = ChangeGuideModule(512)
        self.cgm_4 = ChangeGuideModule(512)
        self.decoder_module4 = BasicConv2d(1024, 512, 3, 1, 1)
        self.decoder_module3 = BasicConv2d(768, 256, 3, 1, 1)
        self.decoder_module2 = BasicConv2d(384, 128, 3, 1, 1)

    def forward(self, A, B):
        size = A.size()[2:]
        # in-place ReLUs at the head of down1…down4 rewrite the previous block's output, as
        # upstream: layer1…3 end up post-ReLU, layer4 stays the BN output.
        layer1_pre = self.inc(A)
        layer1_A = self.down1(layer1_pre)
        layer2_A = self.down2(layer1_A)
        layer3_A = self.down3(layer2_A)
        layer4_A = self.down4(layer3_A)
        layer1_pre = self.inc(B)
        layer1_B = self.down1(layer1_pre)
        layer2_B = self.down2(layer1_B)
        layer3_B = self.down3(layer2_B)
        layer4_B = self.down4(layer3_B)
        layer1 = self.conv_reduce_1(torch.cat((layer1_B, layer1_A), dim=1))
        layer2 = self.conv_reduce_2(torch.cat((layer2_B, layer2_A), dim=1))
        layer3 = self.conv_reduce_3(torch.cat((layer3_B, layer3_A), dim=1))
        layer4 = self.conv_reduce_4(torch.cat((layer4_B, layer4_A), dim=1))
        layer4_1 = F.interpolate(layer4, layer1.size()[2:], mode="bilinear", align_corners=True)
        change_map = self.decoder(layer4_1)
        layer4 = self.cgm_4(layer4, change_map)
        feature4 = self.decoder_module4(torch.cat([self.upsample2x(layer4), layer3], 1))
        layer3 = self.cgm_3(feature4, change_map)
        feature3 = self.decoder_module3(torch.cat([self.upsample2x(layer3), layer2], 1))
        layer2 = self.cgm_2(feature3, change_map)
        layer1 = self.decoder_module2(torch.cat([self.upsample2x(layer2), layer1], 1))
        change_map = F.interpolate(change_map, size, mode="bilinear", align_corners=True)
        final_map = F.interpolate(self.decoder_final(layer1), size, mode="bilinear", align_corners=True)
        return change_map, final_map


class CGNet(nn.Module):
    """forward(x1, x2) → (change prior, final), both [B, 1, H, W]; final is the logit."""

    def __init__(self):
        super().__init__()
        self.backbone = CGNetBackbone()

    def forward(self, x1, x2):
        return self.backbone(x1, x2)


# ---- losses as the configs train them --------------------------------------------------------
def bce_loss(logit, label, ignore=255):
    """mmseg CrossEntropyLoss(use_sigmoid=True) on a 1-channel map: BCE-with-logits against the
    label, averaged over the valid pixels as the engine's cd_loss does (mmseg divides by all B·H·W
    pixels: the same value when nothing is ignored). The logit is first resized to the label
    (bilinear, align_corners False) where it differs, as mmseg's loss_by_feat."""
    if logit.shape[-2:] != label.shape[-2:]:
        logit = F.interpolate(logit, size=label.shape[-2:], mode="bilinear", align_corners=False)
    valid = label != ignore
    target = torch.where(valid, label, torch.zeros_like(label)).to(logit.dtype)
    ce = F.binary_cross_entropy_with_logits(logit[:, 0], target, reduction="none")
    mask = valid.to(logit.dtype)
    return (ce * mask).sum() / mask.sum().clamp(min=1.0)


def ifn_loss(out, label):
    """BCE(out5) + Σ_{k=1..4} BCE(resize(out_k)) (DSIdentityHead), weight 1 each."""
    return sum(bce_loss(o, label) for o in out)


def cgnet_loss(out, label):
    """BCE(final) + BCE(change prior), weight 1 each."""
    return bce_loss(out[1], label) + bce_loss(out[0], label)


MODELS = {"ifn_vgg16": IFN, "cgnet_vgg16": CGNet}
# registry recipes (AdamW, β (0.9, 0.999)): lr, weight decay
OPTIM = {"ifn_vgg16": (1e-3, 5e-2), "cgnet_vgg16": (5e-4, 2.5e-3)}
PARAMS = {"ifn_vgg16": 35994813, "cgnet_vgg16": 38989317}  # the formula manifests' `params`
_LOSS = {"ifn_vgg16": ifn_loss, "cgnet_vgg16": cgnet_loss}


def loss_fn(name):
    return _LOSS[name]


def logits(name, out):
    """The decision logit [B, 1, H, W]: IFN's out5, CGNet's final map."""
    return out[-1]


if __name__ == "__main__" and "--count" in sys.argv:
    bad = 0
    for name, cls in MODELS.items():
        n = sum(p.numel() for p in cls().parameters())
        bad += n != PARAMS[name]
        print(f"{name}: {n:,} parameters (Open-CD: {PARAMS[name]:,}){'' if n == PARAMS[name] else '  MISMATCH'}")
    sys.exit(1 if bad else 0)
