#!/usr/bin/env python3
"""Makes a random OpenAI-architecture ViT CLIP of a chosen shape, saved in the three formats real
CLIP weights ship in, with reference outputs computed by an independent float64 Python
implementation written here from the OpenAI CLIP paper/code's definition (not the C++ code).

Used by tests/cli/test_cmd_clip.cpp to check that nothing in medsad is tuned to the shared
fixture's sizes: other widths and depths, patch 14, a non-224 native input, a context other
than 77, an alternative --image-size whose side is not a multiple of the patch.

usage: make_clip_fixture.py OUT_DIR BPE_VOCAB
writes: openai_jit.pt, openclip_state_dict.pt (OrderedDict wrapped in {"state_dict"} with
"module." prefixes), open_clip_model.safetensors (the same under OpenAI's names),
hf_model.safetensors + config.json, hf_sharded/ (the same in two shards with
model.safetensors.index.json and config.json), image{1,2}.png (native size),
image{1,2}_alt.png (alternative size), reference.json (also the embeddings the same weights give
with GELU in place of QuickGELU).
"""
import collections
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clip"))
from reference_tokenizer import Reference  # noqa: E402

VISION = dict(width=192, layers=3, patch=14, grid=7, mlp=640)  # native input 98, heads 3
TEXT = dict(width=128, layers=2, context=40, vocab=49408, mlp=384)  # heads 2
EMBED = 96
ALT_SIZE = 130  # 130 // 14 = 9 patches a side, 4 pixels dropped
TAP_BLOCKS = [1, 3]
TEXTS = ["a photo of a normal brain MRI.", "abnormal", "Lesion: 12 mm, right-frontal (T2w)!",
         "a very long text " * 12, ""]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def make_weights(gen):
    """OpenAI key -> float32 tensor whose values are exactly representable in float16."""
    def rnd(*shape, std=0.05, mean=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std + mean).half().float()

    w = {}
    vw, tw = VISION["width"], TEXT["width"]
    w["visual.conv1.weight"] = rnd(vw, 3, VISION["patch"], VISION["patch"], std=0.02)
    w["visual.class_embedding"] = rnd(vw, std=0.1)
    w["visual.positional_embedding"] = rnd(VISION["grid"] ** 2 + 1, vw, std=0.1)
    w["visual.proj"] = rnd(vw, EMBED, std=vw ** -0.5)
    w["token_embedding.weight"] = rnd(TEXT["vocab"], tw, std=0.02)
    w["positional_embedding"] = rnd(TEXT["context"], tw, std=0.01)
    w["text_projection"] = rnd(tw, EMBED, std=tw ** -0.5)
    w["logit_scale"] = torch.tensor(math.log(100.0))
    for prefix, width, layers, mlp in (("visual.", vw, VISION["layers"], VISION["mlp"]),
                                       ("", tw, TEXT["layers"], TEXT["mlp"])):
        for name in ("ln_pre", "ln_post") if prefix else ("ln_final",):
            w[f"{prefix}{name}.weight"] = rnd(width, std=0.1, mean=1.0)
            w[f"{prefix}{name}.bias"] = rnd(width, std=0.1)
        for i in range(layers):
            b = f"{prefix}transformer.resblocks.{i}."
            for ln in ("ln_1", "ln_2"):
                w[b + ln + ".weight"] = rnd(width, std=0.1, mean=1.0)
                w[b + ln + ".bias"] = rnd(width, std=0.1)
            w[b + "attn.in_proj_weight"] = rnd(3 * width, width, std=width ** -0.5)
            w[b + "attn.in_proj_bias"] = rnd(3 * width, std=0.02)
            w[b + "attn.out_proj.weight"] = rnd(width, width, std=width ** -0.5)
            w[b + "attn.out_proj.bias"] = rnd(width, std=0.02)
            w[b + "mlp.c_fc.weight"] = rnd(mlp, width, std=width ** -0.5)
            w[b + "mlp.c_fc.bias"] = rnd(mlp, std=0.02)
            w[b + "mlp.c_proj.weight"] = rnd(width, mlp, std=mlp ** -0.5)
            w[b + "mlp.c_proj.bias"] = rnd(width, std=0.02)
    return w


# ---- the reference forward pass, float64 -------------------------------------------------------

def block(x, w, b, heads, mask=None, act="quick_gelu"):
    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], w[b + name + ".weight"], w[b + name + ".bias"], 1e-5)

    n, l, d = x.shape
    h = ln(x, "ln_1")
    q, k, v = (h @ w[b + "attn.in_proj_weight"].T + w[b + "attn.in_proj_bias"]).chunk(3, dim=-1)
    split = lambda t: t.reshape(n, l, heads, d // heads).transpose(1, 2)
    att = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    if mask is not None:
        att = att + mask
    o = (att.softmax(-1) @ split(v)).transpose(1, 2).reshape(n, l, d)
    x = x + o @ w[b + "attn.out_proj.weight"].T + w[b + "attn.out_proj.bias"]
    h = ln(x, "ln_2") @ w[b + "mlp.c_fc.weight"].T + w[b + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h) if act == "quick_gelu" else F.gelu(h)  # gelu: exact (erf), as nn.GELU
    return x + h @ w[b + "mlp.c_proj.weight"].T + w[b + "mlp.c_proj.bias"]


def encode_image(w, pixels, taps=(), act="quick_gelu"):
    """pixels: [B, 3, S, S] normalised. Returns the embedding and {block: tokens}."""
    vw, p, g = VISION["width"], VISION["patch"], VISION["grid"]
    x = F.conv2d(pixels, w["visual.conv1.weight"], stride=p)
    gh, gw = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["visual.class_embedding"].expand(x.shape[0], 1, vw), x], 1)
    pos = w["visual.positional_embedding"]
    if (gh, gw) != (g, g):  # open_clip's resize_pos_embed: bicubic, antialiased, class kept
        grid = pos[1:].reshape(1, g, g, vw).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
        pos = torch.cat([pos[:1], grid.double().permute(0, 2, 3, 1).reshape(gh * gw, vw)])
    x = x + pos
    x = F.layer_norm(x, (vw,), w["visual.ln_pre.weight"], w["visual.ln_pre.bias"], 1e-5)
    out = {}
    for i in range(VISION["layers"]):
        x = block(x, w, f"visual.transformer.resblocks.{i}.", vw // 64, act=act)
        if i + 1 in taps:
            out[i + 1] = x
    x = F.layer_norm(x[:, 0], (vw,), w["visual.ln_post.weight"], w["visual.ln_post.bias"], 1e-5)
    return x @ w["visual.proj"], out


def encode_text(w, tokens, act="quick_gelu"):
    tw, ctx = TEXT["width"], TEXT["context"]
    x = w["token_embedding.weight"][tokens] + w["positional_embedding"]
    mask = torch.full((ctx, ctx), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(TEXT["layers"]):
        x = block(x, w, f"transformer.resblocks.{i}.", tw // 64, mask, act)
    x = F.layer_norm(x, (tw,), w["ln_final.weight"], w["ln_final.bias"], 1e-5)
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ w["text_projection"]


# ---- writers ---------------------------------------------------------------------------------

def module_tree(weights):
    """nn.Module with OpenAI's parameter names, scripted like OpenAI's released archives."""
    root = torch.nn.Module()
    for key, value in weights.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, torch.nn.Module())
            node = getattr(node, part)
        fp16 = value.dim() > 0 and "ln_" not in key  # OpenAI keeps LayerNorms in float32
        node.register_parameter(leaf, torch.nn.Parameter(value.half() if fp16 else value, requires_grad=False))
    root.register_buffer("attn_mask", torch.full((TEXT["context"],) * 2, float("-inf")).triu(1))
    root.register_buffer("input_resolution", torch.tensor(VISION["grid"] * VISION["patch"]))
    root.register_buffer("context_length", torch.tensor(TEXT["context"]))
    root.register_buffer("vocab_size", torch.tensor(TEXT["vocab"]))
    return torch.jit.script(root)


def hf_state_dict(w):
    hf = {"logit_scale": w["logit_scale"],
          "visual_projection.weight": w["visual.proj"].T.contiguous(),
          "text_projection.weight": w["text_projection"].T.contiguous(),
          "vision_model.embeddings.class_embedding": w["visual.class_embedding"],
          "vision_model.embeddings.patch_embedding.weight": w["visual.conv1.weight"],
          "vision_model.embeddings.position_embedding.weight": w["visual.positional_embedding"],
          "vision_model.embeddings.position_ids": torch.arange(VISION["grid"] ** 2 + 1)[None],
          "vision_model.pre_layrnorm.weight": w["visual.ln_pre.weight"],
          "vision_model.pre_layrnorm.bias": w["visual.ln_pre.bias"],
          "vision_model.post_layernorm.weight": w["visual.ln_post.weight"],
          "vision_model.post_layernorm.bias": w["visual.ln_post.bias"],
          "text_model.embeddings.token_embedding.weight": w["token_embedding.weight"],
          "text_model.embeddings.position_embedding.weight": w["positional_embedding"],
          "text_model.embeddings.position_ids": torch.arange(TEXT["context"])[None],
          "text_model.final_layer_norm.weight": w["ln_final.weight"],
          "text_model.final_layer_norm.bias": w["ln_final.bias"]}
    for src, dst, layers in (("visual.transformer", "vision_model.encoder", VISION["layers"]),
                             ("transformer", "text_model.encoder", TEXT["layers"])):
        for i in range(layers):
            s, d = f"{src}.resblocks.{i}.", f"{dst}.layers.{i}."
            for kind in ("weight", "bias"):
                q, k, v = w[s + "attn.in_proj_" + kind].chunk(3)
                hf[d + "self_attn.q_proj." + kind], hf[d + "self_attn.k_proj." + kind] = q, k
                hf[d + "self_attn.v_proj." + kind] = v
                hf[d + "self_attn.out_proj." + kind] = w[s + "attn.out_proj." + kind]
                hf[d + "layer_norm1." + kind] = w[s + "ln_1." + kind]
                hf[d + "layer_norm2." + kind] = w[s + "ln_2." + kind]
                hf[d + "mlp.fc1." + kind] = w[s + "mlp.c_fc." + kind]
                hf[d + "mlp.fc2." + kind] = w[s + "mlp.c_proj." + kind]
    return hf


def write_safetensors(path, tensors):
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        blob = t.numpy().tobytes()
        header[key] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def hf_config():
    return {"architectures": ["CLIPModel"], "projection_dim": EMBED,
            "vision_config": {"hidden_size": VISION["width"], "num_hidden_layers": VISION["layers"],
                              "num_attention_heads": VISION["width"] // 64, "intermediate_size": VISION["mlp"],
                              "patch_size": VISION["patch"], "image_size": VISION["grid"] * VISION["patch"],
                              "hidden_act": "quick_gelu"},
            "text_config": {"hidden_size": TEXT["width"], "num_hidden_layers": TEXT["layers"],
                            "num_attention_heads": TEXT["width"] // 64, "intermediate_size": TEXT["mlp"],
                            "max_position_embeddings": TEXT["context"], "vocab_size": TEXT["vocab"],
                            "hidden_act": "quick_gelu"}}


def make_image(gen, size, path):
    """A smooth random RGB picture; returns its normalised float64 pixels [3, size, size]."""
    coarse = torch.rand(1, 3, 6, 6, generator=gen)
    img = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
    img = (img + 0.15 * torch.rand(3, size, size, generator=gen)).clamp(0, 1)
    u8 = (img * 255).round().to(torch.uint8)
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(path)
    x = u8.double() / 255
    return (x - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / torch.tensor(STD, dtype=torch.float64)[:, None, None]


def main():
    out, vocab = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    w = make_weights(gen)
    module_tree(w).save(os.path.join(out, "openai_jit.pt"))
    torch.save({"epoch": 7, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in w.items())},
               os.path.join(out, "openclip_state_dict.pt"))
    write_safetensors(os.path.join(out, "hf_model.safetensors"), hf_state_dict(w))
    write_safetensors(os.path.join(out, "open_clip_model.safetensors"), w)  # OpenAI names, as open_clip ships
    # The Hugging Face checkpoint again, split into two shards with their index, as large models ship.
    sharded = os.path.join(out, "hf_sharded")
    os.makedirs(sharded, exist_ok=True)
    hf = hf_state_dict(w)
    names = sorted(hf)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        write_safetensors(os.path.join(sharded, shard), {k: hf[k] for k in keys})
        weight_map.update({k: shard for k in keys})
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    with open(os.path.join(sharded, "config.json"), "w") as f:
        json.dump(hf_config(), f)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(), f)

    native = VISION["grid"] * VISION["patch"]
    pixels = torch.stack([make_image(gen, native, os.path.join(out, f"image{i}.png")) for i in (1, 2)])
    alt = torch.stack([make_image(gen, ALT_SIZE, os.path.join(out, f"image{i}_alt.png")) for i in (1, 2)])
    tok = Reference(vocab)
    tokens = torch.tensor([tok.tokenize(t, TEXT["context"]) for t in TEXTS])
    w64 = {k: v.double() for k, v in w.items()}
    with torch.no_grad():
        image_embeds, taps = encode_image(w64, pixels, TAP_BLOCKS)
        alt_embeds, _ = encode_image(w64, alt)
        text_embeds = encode_text(w64, tokens)
        # The same weights with GELU in the MLPs (open_clip's LAION-trained models).
        gelu_image_embeds, _ = encode_image(w64, pixels, act="gelu")
        gelu_text_embeds = encode_text(w64, tokens, act="gelu")
    ref = {"texts": TEXTS, "tokens": tokens.tolist(), "tap_blocks": TAP_BLOCKS, "alt_size": ALT_SIZE,
           "image_embeds": image_embeds.tolist(), "image_embeds_alt": alt_embeds.tolist(),
           "text_embeds": text_embeds.tolist(),
           "image_embeds_gelu": gelu_image_embeds.tolist(), "text_embeds_gelu": gelu_text_embeds.tolist(),
           "block_tokens": {str(b): t.tolist() for b, t in taps.items()},
           "vision": VISION, "text": TEXT, "embed_dim": EMBED}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)


if __name__ == "__main__":
    main()
