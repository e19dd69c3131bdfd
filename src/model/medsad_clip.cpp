#include "model/medsad_clip.h"

#include <cmath>

namespace medsad::model {
namespace F = torch::nn::functional;

MedSadClipImpl::MedSadClipImpl(clip::ClipModel backbone_, const clip::Tokenizer& tokenizer, MedSadConfig cfg)
    : config(std::move(cfg)), backbone(std::move(backbone_)) {
  if (config.train_backbone) {
    register_module("backbone", backbone);
  } else {
    for (auto& p : backbone->parameters()) p.set_requires_grad(false);
    backbone->eval();
  }
  const int64_t d_v = backbone->config.vision.width, d_j = backbone->config.embed_dim;
  seg_adapters = register_module("seg_adapters", torch::nn::ModuleList());
  det_adapters = register_module("det_adapters", torch::nn::ModuleList());
  tpca = register_module("tpca", torch::nn::ModuleList());
  for (size_t level = 0; level < config.tap_blocks.size(); ++level) {
    if (config.use_adapters) {
      seg_adapters->push_back(ImageAdapter(d_v, d_j));
      det_adapters->push_back(ImageAdapter(d_v, d_j));
    }
    if (config.use_tpca) tpca->push_back(TokenPatchCrossAttention(d_j, config.tpca_heads));
  }
  prompts = register_module(
      "prompts", PromptLearner(backbone->text, tokenizer, config.object, config.prompt_length, config.prompts));
}

torch::Tensor top_percent_mean(const torch::Tensor& maps, double fraction) {
  const auto flat = maps.flatten(1);  // [B, HW]
  const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::llround(fraction * flat.size(1))));
  return std::get<0>(flat.topk(k, 1)).mean(1);  // [B]
}

torch::Tensor gaussian_smooth(const torch::Tensor& maps, double sigma) {
  if (sigma <= 0) return maps;
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  auto x = torch::arange(-radius, radius + 1, maps.options()).to(torch::kFloat32);
  auto kernel = torch::exp(-(x * x) / (2 * sigma * sigma));
  kernel = (kernel / kernel.sum()).to(maps.dtype());  // [2r+1]
  auto m = maps.unsqueeze(1);                          // [B, 1, H, W]
  m = F::pad(m, F::PadFuncOptions({radius, radius, radius, radius}).mode(torch::kReplicate));
  m = F::conv2d(m, kernel.view({1, 1, 1, -1}));
  m = F::conv2d(m, kernel.view({1, 1, -1, 1}));
  return m.squeeze(1);  // [B, H, W]
}

MedSadOutput MedSadClipImpl::forward(const torch::Tensor& images, bool smooth) {
  const int64_t B = images.size(0), S = images.size(-1);
  TORCH_CHECK(images.dim() == 4 && images.size(2) == S, "MedSAD-CLIP expects [B, 3, S, S], got ", images.sizes());
  auto& visual = backbone->visual;
  MedSadOutput out;
  out.text = prompts->forward();
  const auto& text_global = out.text.global;  // [2, E]
  const double tau = config.temperature, beta = config.adapter_beta;
  // Without adapters the patches reach text space through CLIP's own ln_post + proj (zero-shot).
  auto to_text_space = [&](const torch::Tensor& tokens) { return torch::matmul(visual->ln_post(tokens), visual->proj); };

  auto x = visual->embed(images);  // [B, 1+N, D]
  const int64_t N = x.size(1) - 1;
  const int64_t grid_h = S / visual->config.patch_size, grid_w = N / grid_h;
  std::vector<torch::Tensor> class_features;
  size_t level = 0;
  for (int64_t block = 1; block <= visual->config.layers && level < config.tap_blocks.size(); ++block) {
    x = visual->transformer->blocks[block - 1](x);
    if (block != config.tap_blocks[level]) continue;
    torch::Tensor seg_hidden, det_class;
    if (config.use_adapters) {
      const auto seg = seg_adapters[level]->as<ImageAdapterImpl>()->forward(x);
      const auto det = det_adapters[level]->as<ImageAdapterImpl>()->forward(x);
      seg_hidden = seg.hidden;                  // [B, 1+N, d_j]
      det_class = det.hidden.select(1, 0);      // [B, d_j]
      x = (1 - 2 * beta) * x + beta * seg.residual + beta * det.residual;
    } else {
      seg_hidden = to_text_space(x);
      det_class = seg_hidden.select(1, 0);
    }
    auto patches = seg_hidden.slice(1, 1);  // [B, N, d_j]
    if (config.use_tpca)
      patches = tpca[level]->as<TokenPatchCrossAttentionImpl>()->forward(patches, out.text.tokens, out.text.token_valid);
    patches = F::normalize(patches, F::NormalizeFuncOptions().dim(-1));
    const auto logits = tau * torch::matmul(patches, text_global.t());  // [B, N, 2]
    // softmax(l)[abnormal] = sigmoid(l_a - l_n). The logit grid is upsampled, not the
    // probabilities: at tau = 100 probabilities saturate and the losses need log-probabilities
    // that stay finite with live gradients (see losses.h).
    auto level_logit = (logits.select(-1, 1) - logits.select(-1, 0)).view({B, 1, grid_h, grid_w});  // [B, 1, gh, gw]
    level_logit = F::interpolate(level_logit, F::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{S, S})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
    out.level_logits.push_back(level_logit.squeeze(1));        // [B, S, S]
    out.level_maps.push_back(torch::sigmoid(out.level_logits.back()));  // [B, S, S]
    class_features.push_back(det_class);
    ++level;
  }
  out.anomaly_map = torch::stack(out.level_maps).mean(0);  // [B, S, S]
  if (smooth) out.anomaly_map = gaussian_smooth(out.anomaly_map, config.smooth_sigma * S / 240.0);
  out.global = F::normalize(torch::stack(class_features).mean(0), F::NormalizeFuncOptions().dim(-1));  // [B, E]
  out.det_logits = tau * torch::matmul(out.global, text_global.t());                                // [B, 2]
  out.p_det = torch::sigmoid(out.det_logits.select(-1, 1) - out.det_logits.select(-1, 0));         // [B]
  out.score = config.score_alpha * out.p_det + (1 - config.score_alpha) * top_percent_mean(out.anomaly_map);
  return out;
}

void MedSadClipImpl::set_compute_dtype(torch::Dtype dtype) {
  backbone->set_compute_dtype(dtype);
  for (auto& m : *seg_adapters) m->as<ImageAdapterImpl>()->compute_dtype = dtype;
  for (auto& m : *det_adapters) m->as<ImageAdapterImpl>()->compute_dtype = dtype;
  for (auto& m : *tpca) m->as<TokenPatchCrossAttentionImpl>()->compute_dtype = dtype;
}

void MedSadClipImpl::to(torch::Device device, bool non_blocking) {
  if (!config.train_backbone) backbone->to(device, non_blocking);
  torch::nn::Module::to(device, non_blocking);
}

torch::Device MedSadClipImpl::device() const { return backbone->visual->positional_embedding.device(); }

void MedSadClipImpl::prepare_for_inference(torch::Dtype dtype) {
  eval();
  for (auto& p : parameters()) p.set_requires_grad(false);
  for (auto& p : backbone->parameters()) p.set_requires_grad(false);
  set_compute_dtype(dtype);
  backbone->store_matrices_in(dtype);
  prompts->freeze_features();
  backbone->release_text_tower();
}

}  // namespace medsad::model
