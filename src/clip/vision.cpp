#include "clip/vision.h"

namespace medsad::clip {
namespace F = torch::nn::functional;
namespace {

// `conv` (3x3, padding 1, with bias) applied at `stride` with its weights in `dtype`, as
// linear_in does for products: [B, C, H, W] -> [B, O, H/stride, W/stride].
torch::Tensor conv3x3_in(const torch::Tensor& x, const torch::nn::Conv2dImpl& conv, int64_t stride,
                         torch::Dtype dtype) {
  return F::conv2d(x.to(dtype), conv.weight.to(dtype),
                   F::Conv2dFuncOptions().bias(conv.bias.to(dtype)).stride(stride).padding(1));
}

}  // namespace

ConvEncoderStageImpl::ConvEncoderStageImpl(int64_t in, int64_t out, int64_t stride_) : stride(stride_) {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1)));
  norm1 = register_module("norm1", torch::nn::GroupNorm(8, out));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1)));
  norm2 = register_module("norm2", torch::nn::GroupNorm(8, out));
}

torch::Tensor ConvEncoderStageImpl::forward(const torch::Tensor& x, torch::Dtype compute_dtype) {
  auto y = x;
  for (auto [conv, norm, s] : {std::tuple{&conv1, &norm1, stride}, {&conv2, &norm2, int64_t{1}}}) {
    y = conv3x3_in(y, **conv, s, compute_dtype);
    // GroupNorm's statistics in fp32: a bf16 sum over a whole 128x128 map loses too much.
    y = torch::gelu((*norm)(y.to(torch::kFloat32))).to(compute_dtype);
  }
  return y;
}

VisionTransformerImpl::VisionTransformerImpl(const ClipVisionConfig& cfg, int64_t embed_dim, Activation act,
                                             double eps)
    : config(cfg) {
  const int64_t D = cfg.width, G = cfg.grid_size();
  if (cfg.stem == PatchStem::Conv) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, D, cfg.patch_size).stride(cfg.patch_size).bias(false)));
  } else if (cfg.stem == PatchStem::ConvEncoder) {
    encoder = register_module("encoder", torch::nn::ModuleList());
    int64_t channels = cfg.stem_channels;
    for (int64_t s = 0, in = 3; (int64_t{2} << s) <= cfg.patch_size; ++s) {
      encoder->push_back(ConvEncoderStage(in, channels, s == 0 ? 1 : 2));
      in = channels;
      channels *= 2;
    }
    encoder_proj = register_module(
        "encoder_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels / 2, D, 3).stride(2).padding(1)));
  } else {
    // Channels double stage by stage and jump to D at the last one: patch 8, D 192 -> 3, 24, 48, 192
    // (the early stages run at high resolution, so they are kept thin).
    stem = register_module("stem", torch::nn::ModuleList());
    int64_t stages = 0;
    while ((int64_t{1} << stages) < cfg.patch_size) ++stages;
    for (int64_t s = 0, in = 3; s < stages; ++s) {
      const int64_t out = s + 1 == stages ? D : std::max<int64_t>(16, D >> (stages - s));
      stem->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(2).padding(1)));
      in = out;
    }
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  class_embedding = register_parameter("class_embedding", torch::randn({D}) * scale);
  positional_embedding = register_parameter("positional_embedding", torch::randn({1 + G * G, D}) * scale);
  ln_pre = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(eps)));
  transformer = register_module("transformer", Transformer(D, cfg.layers, cfg.heads, cfg.mlp_width, act, eps));
  ln_post = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(eps)));
  proj = register_parameter("proj", torch::randn({D, embed_dim}) * scale);
}

torch::Tensor VisionTransformerImpl::positions_for_grid(int64_t grid_h, int64_t grid_w) {
  const int64_t G = config.grid_size(), D = config.width;
  if (grid_h == G && grid_w == G) return positional_embedding;
  auto class_pos = positional_embedding.slice(0, 0, 1);                    // [1, D]
  auto grid_pos = positional_embedding.slice(0, 1).reshape({1, G, G, D})  // [1, G, G, D]
                      .permute({0, 3, 1, 2});                               // [1, D, G, G]
  grid_pos = F::interpolate(grid_pos, F::InterpolateFuncOptions()
                                          .size(std::vector<int64_t>{grid_h, grid_w})
                                          .mode(torch::kBicubic)
                                          .align_corners(false)
                                          .antialias(true));                // [1, D, gh, gw]
  grid_pos = grid_pos.permute({0, 2, 3, 1}).reshape({grid_h * grid_w, D});  // [gh*gw, D]
  return torch::cat({class_pos, grid_pos}, 0);                              // [1 + gh*gw, D]
}

torch::Tensor VisionTransformerImpl::embed(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "image tower expects [B, 3, H, W], got ", images.sizes());
  const int64_t B = images.size(0), D = config.width;
  torch::Tensor patches;  // [B, D, gh, gw]
  if (config.stem == PatchStem::Conv) {
    patches = F::conv2d(images.to(compute_dtype), conv1->weight.to(compute_dtype),
                        F::Conv2dFuncOptions().stride(config.patch_size));
  } else if (config.stem == PatchStem::ConvEncoder) {
    patches = images;
    for (auto& stage : *encoder) patches = stage->as<ConvEncoderStageImpl>()->forward(patches, compute_dtype);
    patches = conv3x3_in(patches, *encoder_proj, 2, compute_dtype);
  } else {
    patches = images;
    for (size_t s = 0; s < stem->size(); ++s) {
      patches = conv3x3_in(patches, *stem[s]->as<torch::nn::Conv2dImpl>(), 2, compute_dtype);
      if (s + 1 < stem->size()) patches = torch::gelu(patches);
    }
  }
  patches = patches.to(torch::kFloat32);
  const int64_t gh = patches.size(2), gw = patches.size(3);
  patches = patches.flatten(2).transpose(1, 2);                          // [B, N, D]
  auto cls = class_embedding.to(patches.dtype()).view({1, 1, D}).expand({B, 1, D});  // [B, 1, D]
  auto tokens = torch::cat({cls, patches}, 1);                           // [B, 1+N, D]
  tokens = tokens + positions_for_grid(gh, gw).to(tokens.dtype());
  return ln_pre(tokens);
}

void VisionTransformerImpl::set_compute_dtype(torch::Dtype dtype) {
  compute_dtype = dtype;
  transformer->set_compute_dtype(dtype);
}

torch::Tensor VisionTransformerImpl::pool(const torch::Tensor& tokens) {
  return torch::matmul(ln_post(tokens.select(1, 0)), proj);  // [B, E]
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  return pool(transformer(embed(images)));
}

VisionTaps VisionTransformerImpl::forward_with_taps(const torch::Tensor& images, const std::vector<int64_t>& blocks) {
  for (int64_t b : blocks)
    TORCH_CHECK(b >= 1 && b <= config.layers, "tap block ", b, " outside 1..", config.layers);
  VisionTaps out;
  auto x = embed(images);
  for (int64_t i = 0; i < config.layers; ++i) {
    x = transformer->blocks[i](x);
    for (int64_t b : blocks)
      if (b == i + 1) out.block_tokens.push_back(x);
  }
  out.embedding = pool(x);
  return out;
}

}  // namespace medsad::clip
