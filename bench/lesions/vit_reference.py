#!/usr/bin/env python3
"""An independent reference for the lesion benchmark: a plain ViT of the scratch backbone's shape
trained from scratch in PyTorch (Debian's python3-torch, bf16 autocast), with nothing shared with
medsad but the data.

It answers "is the scratch model's plateau our implementation's, or the architecture's?": the same
token grid (a stride-8 convolutional stem, 16x16 tokens at 128 px), width 192, 4 pre-LN blocks,
but a linear head per patch and one on the class token instead of MedSAD-CLIP's adapters,
prompts and TPCA, and BCE + Dice instead of focal + Dice + margin.
  --stem strided: three 3x3 stride-2 convolutions (like --scratch-stem conv_stack);
  --stem encoder: two 3x3 convolutions with GroupNorm and GELU at each of 128, 64 and 32 px,
                  then a stride-2 convolution (like --scratch-stem conv_encoder).
It writes the test split's maps as `medsad eval --save-maps` does, so `analyse.py` reads them, and
prints the class-token head's image AUROC and the best mean Dice over thresholds.

Usage: bench/lesions/vit_reference.py BENCHMARK_DIR OUT_DIR [--steps 1500] [--stem strided]
Then:  bench/lesions/analyse.py BENCHMARK_DIR OUT_DIR
(On 2 cores: 1500 steps of 16 with the strided stem take about 12.5 minutes; the encoder stem
with 32 channels, fp32, about 2.5x as long per step.)
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from analyse import auroc
from unet_reference import load_benchmark, save_maps


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, width // 64, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def encoder_stage(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.GELU()]


class ViT(nn.Module):
    """[B, 1, S, S] -> per-pixel logits [B, 1, S, S] (patch logits upsampled) and image logits [B]."""

    def __init__(self, stem, channels, width=192, layers=4, size=128):
        super().__init__()
        d = width
        if stem == "strided":
            self.stem = nn.Sequential(nn.Conv2d(1, d // 4, 3, 2, 1), nn.GELU(), nn.Conv2d(d // 4, d // 2, 3, 2, 1),
                                      nn.GELU(), nn.Conv2d(d // 2, d, 3, 2, 1))
        else:
            c = channels
            self.stem = nn.Sequential(*encoder_stage(1, c, 1), *encoder_stage(c, 2 * c, 2),
                                      *encoder_stage(2 * c, 4 * c, 2), nn.Conv2d(4 * c, d, 3, 2, 1))
        self.grid = size // 8
        self.cls = nn.Parameter(torch.randn(1, 1, d) * d ** -0.5)
        self.pos = nn.Parameter(torch.randn(1, self.grid ** 2 + 1, d) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(d), nn.LayerNorm(d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(layers)])
        self.seg, self.det = nn.Linear(d, 1), nn.Linear(d, 1)

    def forward(self, x):
        B, S = x.shape[0], x.shape[-1]
        with torch.autocast("cpu", enabled=False):  # GroupNorm has no bf16 autocast kernel here
            t = self.stem(x.float())
        t = torch.cat([self.cls.expand(B, -1, -1), t.flatten(2).transpose(1, 2)], 1) + self.pos
        t = self.ln_pre(t)
        for block in self.blocks:
            t = block(t)
        t = self.ln_post(t)
        seg = self.seg(t[:, 1:]).transpose(1, 2).reshape(B, 1, self.grid, self.grid).float()
        return F.interpolate(seg, size=(S, S), mode="bilinear", align_corners=False), self.det(t[:, 0]).float()[:, 0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--stem", choices=["strided", "encoder"], default="strided")
    parser.add_argument("--channels", type=int, default=32, help="encoder stem: first stage's channels")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    train_x, train_y, test_x, test_y, test_entries = load_benchmark(args.bench)
    train_labels = (train_y.flatten(1).amax(1) > 0).float()
    normalise = lambda x: (x - 0.5) / 0.25

    model = ViT(args.stem, args.channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warmup = 150
    start = time.time()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(train_x), (args.batch,))
        x, y, label = train_x[idx], train_y[idx], train_labels[idx]
        if torch.rand(1).item() < 0.5:
            x, y = x.flip(3), y.flip(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            seg, det = model(normalise(x))
        p = torch.sigmoid(seg)
        dice = (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
        loss = (F.binary_cross_entropy_with_logits(seg, y, pos_weight=torch.tensor(5.0)) + (1 - dice).mean() +
                F.binary_cross_entropy_with_logits(det, label))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step + 1}/{args.steps} loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    maps, scores = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(test_x), 32):
            seg, det = model(normalise(test_x[i:i + 32]))
            maps.append(torch.sigmoid(seg.float())[:, 0])
            scores.append(det.float())
    maps, scores = torch.cat(maps).numpy(), torch.cat(scores).numpy()
    labels = np.array([e["label"] for e in test_entries])
    masks = test_y[:, 0].numpy() > 0.5
    best_dice = max(np.mean([2 * (m & t).sum() / max(1, m.sum() + t.sum())
                             for m, t, l in zip(maps > th, masks, labels) if l]) for th in np.arange(0.1, 1.0, 0.1))
    print(f"class-token image AUROC {auroc(scores[labels == 1], scores[labels == 0]):.3f}; "
          f"best mean Dice over thresholds (abnormal slices) {best_dice:.3f}")
    save_maps(args.bench, args.out, test_entries, maps)


if __name__ == "__main__":
    main()
