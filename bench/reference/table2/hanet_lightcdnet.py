"""Plain-PyTorch mirrors of Open-CD's HANet (configs/hanet/hanet_512x512_200k_cgwx.py) and
LightCDNet-s (configs/lightcdnet/lightcdnet_s_512x512_200k_cgwx.py), for timing PyTorch eager
beside the engine on the GPU machine (no mmseg / mmcv / Open-CD there). Written from the upstream
code (opencd/models/backbones/{hanet,lightcdnet}.py, necks/tiny_fpn.py, decode_heads/
ds_fpn_head.py; mmseg FCNHead / BaseDecodeHead / LayerNorm2d; mmcv's pure-PyTorch
CrissCrossAttention and Scale) and the engine's models/{hanet,lightcdnet,criss_cross}.ts. The
forward passes follow upstream's own computation order (HANet's 600-channel concat before conv6
included: the engine factors conv6 over the levels, upstream does not). Module names give
state_dict() keys equal to upstream's, so the formula weights load strictly.

forward(x1, x2) returns the logits [B, 2, H, W] at input resolution; LightCDNet in train mode
returns (logits, aux) with aux its auxiliary FCN head's logits at 1/2, which loss_fn uses.
Checked by check.py (CPU): /usr/bin/python3 bench/reference/table2/check.py hanet lightcdnet_s"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
from opencd_models import ce_loss, ohem_ce_loss, resize  # noqa: E402


def _kaiming_fan_out(conv, zero_bias=True):
    """kaiming_normal_(fan_out, relu) on the weight; bias 0 (mmcv kaiming_init) or kept."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if zero_bias and conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv_seg(cin, classes):
    """BaseDecodeHead's conv_seg, its init_weights: normal(0, 0.01), bias 0."""
    conv = nn.Conv2d(cin, classes, 1)
    nn.init.normal_(conv.weight, 0.0, 0.01)
    nn.init.zeros_(conv.bias)
    return conv


# ==== HANet ===================================================================================
class CAM_Module(nn.Module):
    """Channel attention: softmax(max_row(E) - E) with E = X X^T, out = gamma * (A X) + X."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = x.view(b, c, -1)
        energy = torch.bmm(q, q.permute(0, 2, 1))
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        out = torch.bmm(torch.softmax(energy_new, -1), q).view(b, c, h, w)
        return self.gamma * out + x


class Conv_CAM_Layer(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.attn = nn.Sequential(nn.Conv2d(cin, 32, 3, padding=1), nn.BatchNorm2d(32), nn.PReLU(), CAM_Module(),
                                  nn.Conv2d(32, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.PReLU())

    def forward(self, x):
        return self.attn(x)


class FEC(nn.Module):
    """Feature extraction cell: y = conv1(x); ReLU(bn2(conv2(ReLU(bn1(y)))) + y)."""

    def __init__(self, cin, mid, cout):
        super().__init__()
        self.activation = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.conv1(x)
        identity = x
        x = self.bn2(self.conv2(self.activation(self.bn1(x))))
        return self.activation(x + identity)


class RowAttention(nn.Module):
    """Each row attends over its W pixels: softmax(Q K^T) unscaled, gamma * out + x."""

    def __init__(self, dim):
        super().__init__()
        self.query_conv = nn.Conv2d(dim, dim, 1)
        self.key_conv = nn.Conv2d(dim, dim, 1)
        self.value_conv = nn.Conv2d(dim, dim, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, _, h, w = x.shape
        q = self.query_conv(x).permute(0, 2, 1, 3).contiguous().view(b * h, -1, w).permute(0, 2, 1)
        k = self.key_conv(x).permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)
        v = self.value_conv(x).permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)
        attn = torch.softmax(torch.bmm(q, k), 2)
        out = torch.bmm(v, attn.permute(0, 2, 1)).view(b, h, -1, w).permute(0, 2, 1, 3)
        return self.gamma * out + x


class ColAttention(RowAttention):
    """Each column attends over its H pixels: row attention of the transposed map."""

    def forward(self, x):
        return super().forward(x.transpose(2, 3)).transpose(2, 3)


class HAN(nn.Module):
    def __init__(self, in_channels=3, n1=40):
        super().__init__()
        f = [n1, 2 * n1, 4 * n1, 8 * n1]
        self.conv0_0 = nn.Conv2d(in_channels, n1, 5, padding=2)
        self.conv0 = FEC(f[0], f[0], f[0])
        self.conv2 = FEC(f[0], f[1], f[1])
        self.conv4 = FEC(f[1], f[2], f[2])
        self.conv5 = FEC(f[2], f[3], f[3])
        self.conv6 = nn.Conv2d(sum(f), f[1], 1)
        for k in range(1, 5):
            c = f[k - 1]
            for d in range(1, 5):
                setattr(self, f"conv6_{k}_{d}", nn.Conv2d(2 * c, c, 3, padding=d, dilation=d, groups=c // 2))
            setattr(self, f"conv{k}_1", nn.Conv2d(4 * c, c, 1))
        for k in range(1, 5):
            setattr(self, f"cam_attention_{k}", Conv_CAM_Layer(f[k - 1], f[k - 1]))
        for k in range(1, 5):
            setattr(self, f"row_attention_{k}", RowAttention(f[k - 1]))
        for k in range(1, 5):
            setattr(self, f"col_attention_{k}", ColAttention(f[k - 1]))
        # built but never used upstream (no gradient); kept for the state_dict
        self.c4_conv = nn.Conv2d(f[3], f[1], 3, padding=1)
        self.c3_conv = nn.Conv2d(f[2], f[1], 3, padding=1)
        self.c2_conv = nn.Conv2d(f[1], f[1], 3, padding=1)
        self.c1_conv = nn.Conv2d(f[0], f[0], 3, padding=1)
        self.pool = nn.AvgPool2d(2, 2)
        self.Up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        # HAN's own init: kaiming_normal(fan_out, relu) on every conv weight (biases kept), BN 1 / 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _kaiming_fan_out(m, zero_bias=False)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _encode(self, x):
        """Per-date features at 1/1 .. 1/8 (date by date, as upstream: separate BN batches)."""
        x1 = self.conv0(self.conv0_0(x))
        x2 = self.conv2(self.pool(x1))
        x3 = self.conv4(self.pool(x2))
        return [x1, x2, x3, self.conv5(self.pool(x3))]

    def _level(self, k, a, b):
        ab = torch.cat([a, b], 1)
        c1 = getattr(self, f"conv{k}_1")(torch.cat([getattr(self, f"conv6_{k}_{d}")(ab) for d in range(1, 5)], 1))
        row, col = getattr(self, f"row_attention_{k}"), getattr(self, f"col_attention_{k}")
        return getattr(self, f"cam_attention_{k}")(c1) + row(col(c1))

    def forward(self, x1, x2):
        fa, fb = self._encode(x1), self._encode(x2)
        c = self._level(4, fa[3], fb[3])
        for k in (3, 2, 1):
            c = torch.cat([self._level(k, fa[k - 1], fb[k - 1]), self.Up1(c)], 1)
        return self.conv6(c)


class FCNHead0(nn.Module):
    """mmseg FCNHead with num_convs 0: convs = Identity, Dropout2d(0.1), conv_seg."""

    def __init__(self, channels, classes=2):
        super().__init__()
        self.conv_seg = _conv_seg(channels, classes)
        self.dropout = nn.Dropout2d(0.1)

    def forward(self, x):
        return self.conv_seg(self.dropout(x))


class HANet(nn.Module):
    """DIEncoderDecoder(HAN(base 40), FCNHead(80, num_convs 0)); logits at full resolution."""

    def __init__(self):
        super().__init__()
        self.backbone = HAN()
        self.decode_head = FCNHead0(80)

    def forward(self, x1, x2):
        out = self.decode_head(self.backbone(x1, x2))
        return out if out.shape[-2:] == x1.shape[-2:] else resize(out, x1.shape[-2:])


# ==== LightCDNet-s ============================================================================
class Scale(nn.Module):
    """mmcv Scale: one learnt scalar (shape [])."""

    def __init__(self, scale=0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x):
        return x * self.scale


class CrissCrossAttention(nn.Module):
    """mmcv's CrissCrossAttention (pure PyTorch since 1.3.13): each pixel attends to its column
    (itself excluded through the -inf diagonal) and its row under one softmax."""

    def __init__(self, channels):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x):
        h = x.shape[2]
        query, key, value = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        neg_inf_diag = torch.diag(torch.tensor(float("-inf"), device=x.device).repeat(h), 0)
        energy_h = (torch.einsum("bchw,bciw->bwhi", query, key) + neg_inf_diag).transpose(1, 2)
        energy_w = torch.einsum("bchw,bchj->bhwj", query, key)
        attn = torch.softmax(torch.cat([energy_h, energy_w], -1), -1)  # [B, H, W, H + W]
        out = torch.einsum("bciw,bhwi->bchw", value, attn[..., :h])
        out = out + torch.einsum("bchj,bhwj->bchw", value, attn[..., h:])
        return (self.gamma(out) + x).contiguous()


class CCA(nn.Module):
    def __init__(self, channels, recurrence=2):
        super().__init__()
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels)

    def forward(self, x):
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x


def channel_shuffle(x, groups=2):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, cin, cout, downsample=False):
        super().__init__()
        self.downsample = downsample
        half = cout // 2
        if downsample:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, 1, 0, bias=False), nn.BatchNorm2d(half), nn.ReLU(True))
        else:
            assert cin == cout
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if downsample else half, half, 1, 1, 0, bias=False), nn.BatchNorm2d(half), nn.ReLU(True),
            nn.Conv2d(half, half, 3, 2 if downsample else 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, 1, 0, bias=False), nn.BatchNorm2d(half), nn.ReLU(True))

    def forward(self, x):
        if self.downsample:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        else:
            c = x.shape[1] // 2
            out = torch.cat((x[:, :c], self.branch2(x[:, c:])), 1)
        return channel_shuffle(out, 2)


class TimeAttention(nn.Module):
    def __init__(self, channels):
        super().__init__()
        hidden = max(channels // 16, 8)
        self.mlp = nn.Sequential(nn.Conv2d(2 * channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * channels, 1, bias=False))

    def forward(self, x1, x2):
        y = self.mlp(F.adaptive_avg_pool2d(torch.cat((x1, x2), 1), 1))
        b, c, h, w = y.shape
        a1, a2 = y.reshape(b, 2, c // 2, h, w).transpose(0, 1)
        return x1 * torch.sigmoid(a1) + x1, x2 * torch.sigmoid(a2) + x2


class ShuffleFusion(nn.Module):
    """Open-CD's shuffle_fusion."""

    def __init__(self, c, blocks):
        super().__init__()
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU()),
            *[ShuffleBlock(4 * c, 4 * c) for _ in range(blocks)])
        self.single_conv = nn.Sequential(nn.Conv2d(4 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.time_attn = TimeAttention(c)
        self.final_conv = nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x1, x2):
        x1 = x1 + self.single_conv(self.stages(x1))
        x2 = x2 + self.single_conv(self.stages(x2))
        x1, x2 = self.time_attn(x1, x2)
        return self.final_conv(channel_shuffle(torch.cat((x1, x2), 1)))


class LayerNorm2d(nn.LayerNorm):
    """mmseg's LayerNorm2d: LayerNorm over channels per pixel, eps 1e-6."""

    def __init__(self, channels, eps=1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1).contiguous(), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


class LightCDNetBackbone(nn.Module):
    """LightCDNet "small": widths [24, 48, 96, 192], stage repeats [4, 8, 4], 4 fusion blocks.
    Outputs F and the stages' outputs at indices cumsum([4 - 1, 8, 4]) = 3, 11, 15, as upstream
    (stages 16-18 still run)."""

    def __init__(self, repeats=(4, 8, 4), widths=(24, 48, 96, 192), blocks=4):
        super().__init__()
        idx = [repeats[0] - 1] + list(repeats[1:])
        self.index_list = [sum(idx[:i + 1]) for i in range(len(idx))]
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), LayerNorm2d(widths[0]), nn.GELU())
        self.fusion_conv = ShuffleFusion(widths[0], blocks)
        stages, cin = [], widths[0]
        for s, n in enumerate(repeats):
            cout = widths[s + 1]
            for i in range(n):
                stages.append(ShuffleBlock(cin, cout, downsample=True) if i == 0 else ShuffleBlock(cin, cin))
                cin = cout
            stages.append(CCA(cout, 2))
        self.stages = nn.Sequential(*stages)

    def forward(self, x1, x2):
        x = self.fusion_conv(self.conv1(x1), self.conv1(x2))
        outs = [x]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.index_list:
                outs.append(x)
        return outs


class PlainConvModule(nn.Module):
    """mmcv ConvModule with no norm and no activation: `conv` with bias."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2)

    def forward(self, x):
        return self.conv(x)


class TinyFPN(nn.Module):
    """exist_early_x, early_x_for_fpn, custom_block 'conv': lateral 1x1, nearest top-down sum,
    3x3 per level; returns (F, P0..P3). init_cfg: Xavier uniform on every Conv2d, bias 0."""

    def __init__(self, in_channels=(24, 48, 96, 192), out=48):
        super().__init__()
        self.lateral_convs = nn.ModuleList([PlainConvModule(c, out, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([PlainConvModule(out, out, 3) for _ in in_channels])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs):
        lat = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        return (inputs[0],) + tuple(self.fpn_convs[i](lat[i]) for i in range(len(lat)))


class ConvBNReLU(nn.Module):
    """mmcv ConvModule with BN and ReLU (conv without bias), kaiming fan_out init."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        _kaiming_fan_out(self.conv)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class DS_FPNHead(nn.Module):
    """Per level P0..P3 a 1x1 ConvModule, summed at P0's size after bilinear resizes, then
    conv_seg (dropout_ratio 0: no dropout). Its input's first entry (F) is dropped."""

    def __init__(self, levels=4, channels=48, classes=2):
        super().__init__()
        self.conv_seg = _conv_seg(channels, classes)
        self.scale_heads = nn.ModuleList([nn.Sequential(ConvBNReLU(channels, channels, 1)) for _ in range(levels)])

    def forward(self, inputs):
        x = inputs[1:]
        out = self.scale_heads[0](x[0])
        for i in range(1, len(self.scale_heads)):
            out = out + resize(self.scale_heads[i](x[i]), out.shape[2:])
        return self.conv_seg(out)


class AuxFCNHead(nn.Module):
    """mmseg FCNHead, num_convs 1 (3x3 ConvModule), no concat, no dropout, on F."""

    def __init__(self, cin=24, channels=24, classes=2):
        super().__init__()
        self.conv_seg = _conv_seg(channels, classes)
        self.convs = nn.Sequential(ConvBNReLU(cin, channels, 3))

    def forward(self, x):
        return self.conv_seg(self.convs(x))


class LightCDNet(nn.Module):
    """DIEncoderDecoder(LightCDNet small, TinyFPN, DS_FPNHead, auxiliary FCNHead). Eval: logits
    resized to the input; train: (logits, aux logits at 1/2)."""

    def __init__(self):
        super().__init__()
        self.backbone = LightCDNetBackbone()
        self.neck = TinyFPN()
        self.decode_head = DS_FPNHead()
        self.auxiliary_head = AuxFCNHead()

    def forward(self, x1, x2):
        feats = self.neck(self.backbone(x1, x2))
        out = resize(self.decode_head(feats), x1.shape[-2:])
        if self.training:
            return out, self.auxiliary_head(feats[0])
        return out


# ==== interface ===============================================================================
MODELS = {"hanet": HANet, "lightcdnet_s": LightCDNet}
# the registry's recipes (models/registry.ts): AdamW, betas (0.9, 0.999); (lr, weight decay)
OPTIM = {"hanet": (1e-3, 0.05), "lightcdnet_s": (3e-3, 0.05)}
AUX_WEIGHT = 0.4


def _lightcdnet_loss(out, label):
    """OHEM CE (0.7, 100000) on the decode logits + 0.4 x CE of the auxiliary logits resized to
    the labels (the sampler is the decode head's only)."""
    if isinstance(out, (tuple, list)):
        logits, aux = out
        return ohem_ce_loss(logits, label, 0.7, 100000) + AUX_WEIGHT * ce_loss(resize(aux, label.shape[-2:]), label)
    return ohem_ce_loss(out, label, 0.7, 100000)


def loss_fn(name):
    return {"hanet": ce_loss, "lightcdnet_s": _lightcdnet_loss}[name]


def logits(name, out):
    return out[0] if isinstance(out, (tuple, list)) else out


if __name__ == "__main__" and "--count" in sys.argv:
    for name, cls in MODELS.items():
        m = cls()
        n = sum(p.numel() for p in m.parameters())
        aux = sum(p.numel() for p in getattr(m, "auxiliary_head", nn.Module()).parameters())
        print(f"{name}: {n:,} parameters ({n - aux:,} without the auxiliary head)")
