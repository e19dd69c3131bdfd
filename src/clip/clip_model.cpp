#include "clip/clip_model.h"

#include <cmath>

namespace medsad::clip {

ClipModelImpl::ClipModelImpl(const ClipConfig& cfg) : config(cfg) {
  cfg.validate();
  visual = register_module("visual", VisionTransformer(cfg.vision, cfg.embed_dim, cfg.activation, cfg.layer_norm_eps));
  text = register_module("text", TextTransformer(cfg.text, cfg.embed_dim, cfg.activation, cfg.layer_norm_eps));
  logit_scale = register_parameter("logit_scale", torch::tensor(std::log(1.0 / 0.07), torch::kFloat32));
}

void ClipModelImpl::set_compute_dtype(torch::Dtype dtype) {
  visual->set_compute_dtype(dtype);
  if (text) text->transformer->set_compute_dtype(dtype);
}

std::vector<torch::Tensor> ClipModelImpl::matrix_parameters() {
  std::vector<torch::Tensor> out;
  for (auto& p : named_parameters(/*recurse=*/true)) {
    const std::string& key = p.key();
    const bool in_block = key.find("transformer.resblocks.") != std::string::npos &&
                          key.find(".ln_") == std::string::npos;
    const bool in_stem = key.rfind("visual.conv1.", 0) == 0 || key.rfind("visual.stem.", 0) == 0 ||
                         (key.rfind("visual.encoder", 0) == 0 && key.find(".norm") == std::string::npos);
    if (in_block || in_stem) out.push_back(p.value());
  }
  return out;
}

void ClipModelImpl::store_matrices_in(torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : matrix_parameters())
    if (p.scalar_type() != dtype) p.set_data(p.to(dtype));
}

void ClipModelImpl::release_text_tower() {
  if (!text) return;
  unregister_module("text");
  text = nullptr;
}

}  // namespace medsad::clip
