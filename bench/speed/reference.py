#!/usr/bin/env python3
"""The plain eager-PyTorch reference of bench/speed: what a Python research code base runs.

An independent CLIP ViT (OpenAI's layout and key names, so that `medsad` loads the very same
weights) and a MedSAD-CLIP training step (adapters at four tap blocks, learned prompts through
the text tower, Token-Patch Cross-Attention, focal + Dice + BCE + margin losses, AdamW), in fp32
eager mode as Debian's python3-torch ships it (or on a GPU, --device cuda). Nothing here imports
the project.

  reference.py weights ARCH OUT.pt          random weights (fp16, as OpenAI ships CLIP)
  reference.py encode ARCH OUT.pt --batch B --iters N --embeddings E.f32
  reference.py train-step ARCH OUT.pt --batch B --iters N
Each timing command prints one JSON line.
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {
    # width, blocks, patch, image side, joint width, text width, text blocks
    "ViT-B-16": dict(width=768, layers=12, patch=16, image=224, embed=512, text_width=512, text_layers=12),
    "ViT-L-14-336": dict(width=1024, layers=24, patch=14, image=336, embed=768, text_width=768, text_layers=12),
}
CONTEXT, VOCAB = 77, 49408


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.heads = width // 64
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask=None):  # x: [B, L, D]
        B, L, D = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, L, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            logits = logits + mask
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
        return self.out_proj(out)


class Mlp(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc, self.gelu, self.c_proj = nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(width), Attention(width), nn.LayerNorm(width), Mlp(width)

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width) for _ in range(layers))


class Visual(nn.Module):
    def __init__(self, a):
        super().__init__()
        w, grid = a["width"], a["image"] // a["patch"]
        self.conv1 = nn.Conv2d(3, w, a["patch"], a["patch"], bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w) * w ** -0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
        self.transformer = Transformer(w, a["layers"])
        self.proj = nn.Parameter(torch.randn(w, a["embed"]) * w ** -0.5)

    def embed(self, images):  # [B, 3, S, S] -> [B, 1+N, D]
        x = self.conv1(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)

    def forward(self, images):  # -> [B, E]
        x = self.embed(images)
        for block in self.transformer.resblocks:
            x = block(x)
        return self.ln_post(x[:, 0]) @ self.proj


class Clip(nn.Module):
    def __init__(self, a):
        super().__init__()
        tw = a["text_width"]
        self.visual = Visual(a)
        self.token_embedding = nn.Embedding(VOCAB, tw)
        self.positional_embedding = nn.Parameter(torch.randn(CONTEXT, tw) * 0.01)
        self.transformer = Transformer(tw, a["text_layers"])
        self.ln_final = nn.LayerNorm(tw)
        self.text_projection = nn.Parameter(torch.randn(tw, a["embed"]) * tw ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))
        for block in list(self.visual.transformer.resblocks) + list(self.transformer.resblocks):
            nn.init.normal_(block.attn.in_proj_weight, std=block.attn.in_proj_weight.shape[1] ** -0.5)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def encode_embeddings(self, x):  # [K, L, Dt] token embeddings -> [K, L, E] projected tokens
        mask = torch.full((CONTEXT, CONTEXT), float("-inf"), device=x.device).triu(1)
        x = x + self.positional_embedding
        for block in self.transformer.resblocks:
            x = block(x, mask)
        return self.ln_final(x) @ self.text_projection


def example_images(batch, side):
    """A deterministic input that the C++ side rebuilds: sin(0.001 i) over the flat index."""
    return torch.sin(torch.arange(batch * 3 * side * side, dtype=torch.float32) * 1e-3).reshape(batch, 3, side, side)


def timed(fn, iters, device):
    """Median seconds of `iters` runs after a warm-up; on a GPU each run ends when its kernels do."""
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    run()  # warm-up: first-touch allocation and one-time kernel selection
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(arch, path, device):
    model = Clip(ARCHS[arch])
    state = torch.load(path)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().to(device)


def cmd_weights(args):
    torch.manual_seed(args.seed)
    model = Clip(ARCHS[args.arch])
    torch.save({k: v.half() for k, v in model.state_dict().items()}, args.weights)


def cmd_encode(args):
    model = load(args.arch, args.weights, args.device).visual
    for p in model.parameters():
        p.requires_grad_(False)
    images = example_images(args.batch, ARCHS[args.arch]["image"]).to(args.device)
    with torch.no_grad():
        seconds = timed(lambda: model(images), args.iters, args.device)
        if args.embeddings:
            model(images).cpu().numpy().tofile(args.embeddings)  # raw float32, row-major [B, E]
    print(json.dumps({"what": "encode", "arch": args.arch, "batch": args.batch, "seconds": seconds,
                      "images_per_s": args.batch / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


class MedSadHead(nn.Module):
    """Adapters, learned prompt context and TPCA of MedSAD-CLIP (design doc, Architecture)."""

    def __init__(self, a, levels=4, prompt_length=8, heads=8):
        super().__init__()
        d, e, tw = a["width"], a["embed"], a["text_width"]
        self.seg_down = nn.ModuleList(nn.Linear(d, e, bias=False) for _ in range(levels))
        self.seg_up = nn.ModuleList(nn.Linear(e, d, bias=False) for _ in range(levels))
        self.det_down = nn.ModuleList(nn.Linear(d, e, bias=False) for _ in range(levels))
        self.det_up = nn.ModuleList(nn.Linear(e, d, bias=False) for _ in range(levels))
        self.tpca = nn.ModuleList(nn.MultiheadAttention(e, heads, batch_first=True) for _ in range(levels))
        self.tpca_norm = nn.ModuleList(nn.LayerNorm(e) for _ in range(levels))
        self.context = nn.Parameter(torch.randn(2, prompt_length, tw) * 0.02)
        self.taps = [a["layers"] * (i + 1) // levels for i in range(levels)]


def train_step_fn(clip, head, batch, side, device, tau=100.0, beta=0.1, margin=0.2):
    """One MedSAD-CLIP step; returns a closure that runs forward, losses, backward and AdamW."""
    torch.manual_seed(0)
    images = example_images(batch, side).to(device)
    masks = (torch.rand(batch, side, side) < 0.05).float()
    masks[: batch // 2] = 0
    masks = masks.to(device)
    labels = (torch.arange(batch) >= batch // 2).long().to(device)
    # SOT, M context slots, "normal|abnormal brain mri .", EOT, padding
    M = head.context.shape[1]
    ids = torch.zeros(2, CONTEXT, dtype=torch.long)
    for c in range(2):
        words = [1000 + c, 2000, 3000, 269]
        ids[c, : M + len(words) + 2] = torch.tensor([49406] + [0] * M + words + [49407])
    ids = ids.to(device)
    eot = ids.argmax(-1)
    head.to(device)
    optimizer = torch.optim.AdamW([p for p in head.parameters()], lr=1e-3)
    visual = clip.visual

    def step():
        emb = clip.token_embedding(ids)
        emb = torch.cat([emb[:, :1], head.context, emb[:, 1 + M:]], 1)
        text_tokens = clip.encode_embeddings(emb)  # [2, L, E]
        text_global = F.normalize(text_tokens[torch.arange(2, device=device), eot], dim=-1)  # [2, E]
        valid = (torch.arange(CONTEXT, device=device)[None] <= eot[:, None]).reshape(-1)
        kv = text_tokens.reshape(1, 2 * CONTEXT, -1)[:, valid]
        x = visual.embed(images)
        level_logits, class_feats, level = [], [], 0
        for b, block in enumerate(visual.transformer.resblocks, 1):
            x = block(x)
            if b != head.taps[level]:
                continue
            seg = F.leaky_relu(head.seg_down[level](x))
            det = F.leaky_relu(head.det_down[level](x))
            x = (1 - 2 * beta) * x + beta * F.leaky_relu(head.seg_up[level](seg)) + beta * F.leaky_relu(head.det_up[level](det))
            patches = seg[:, 1:]
            attended = head.tpca[level](patches, kv.expand(batch, -1, -1), kv.expand(batch, -1, -1), need_weights=False)[0]
            patches = F.normalize(head.tpca_norm[level](patches + attended), dim=-1)
            logits = tau * patches @ text_global.t()  # [B, N, 2]
            grid = int(math.isqrt(patches.shape[1]))
            diff = (logits[..., 1] - logits[..., 0]).reshape(batch, 1, grid, grid)
            level_logits.append(F.interpolate(diff, size=(side, side), mode="bilinear", align_corners=False)[:, 0])
            class_feats.append(det[:, 0])
            level += 1
            if level == len(head.taps):
                break
        loss = 0
        for logit in level_logits:
            p = torch.sigmoid(logit)
            ce = F.binary_cross_entropy_with_logits(logit, masks, reduction="none")
            pt = p * masks + (1 - p) * (1 - masks)
            loss = loss + (ce * (1 - pt) ** 2).mean()
            inter = (p * masks).sum((1, 2))
            loss = loss + (1 - (2 * inter + 1) / (p.sum((1, 2)) + masks.sum((1, 2)) + 1)).mean()
        g = F.normalize(torch.stack(class_feats).mean(0), dim=-1)
        det_logits = tau * g @ text_global.t()
        loss = loss + F.binary_cross_entropy_with_logits(det_logits[:, 1] - det_logits[:, 0], labels.float())
        cos = g @ text_global.t()
        loss = loss + F.cross_entropy(tau * (cos - margin * F.one_hot(labels, 2)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def cmd_train_step(args):
    a = ARCHS[args.arch]
    clip = load(args.arch, args.weights, args.device)
    for p in clip.parameters():
        p.requires_grad_(False)
    head = MedSadHead(a)
    step = train_step_fn(clip, head, args.batch, a["image"], args.device)
    seconds = timed(step, args.iters, args.device)
    result = {"what": "train-step", "arch": args.arch, "batch": args.batch, "seconds": seconds}
    if args.count_flops:
        # PyTorch's own count of the step's matrix products and convolutions (forward and backward),
        # an independent check of the C++ side's formula.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
            step()
        products = ("aten::mm", "aten::addmm", "aten::bmm", "aten::conv2d")
        result["profiled_gflop"] = sum(e.flops for e in prof.key_averages() if e.key in products) / 1e9
    print(json.dumps(result))


def parse_device(name):
    try:
        return torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a device name: {name!r} (cpu, cuda or cuda:N)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("weights", "encode", "train-step"):
        p = sub.add_parser(name)
        p.add_argument("arch", choices=sorted(ARCHS))
        p.add_argument("weights")
        p.add_argument("--batch", type=int, default=1)
        p.add_argument("--iters", type=int, default=3)
        p.add_argument("--threads", type=int, default=0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--embeddings", default="")
        p.add_argument("--device", type=parse_device, default="cpu", help="cpu, cuda or cuda:N")
        p.add_argument("--count-flops", action="store_true", help="train-step: also profile one step's products")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    {"weights": cmd_weights, "encode": cmd_encode, "train-step": cmd_train_step}[args.command](args)


if __name__ == "__main__":
    main()
