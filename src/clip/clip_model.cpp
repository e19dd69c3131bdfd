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
  text->transformer->set_compute_dtype(dtype);
}

}  // namespace medsad::clip
