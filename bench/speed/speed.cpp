// The C++ side of bench/speed (driven by bench/speed/run): each command prints one JSON line.
//   medsad_speed peak                                   bf16 and fp32 matrix-product GFLOP/s
//   medsad_speed encode WEIGHTS [--precision P] [--batch B] [--iters N] [--embeddings F]
//   medsad_speed train-step WEIGHTS [--precision P] [--batch B] [--iters N]   (WEIGHTS none: scratch)
//       [--scratch-stem S] [--fixed-prompts] [--margin M]   the demo's step: conv_encoder, fixed, 0
//       [--profile FILE]   LibTorch's autograd profiler over the timed steps, a Chrome trace
// peak, encode and train-step take --device (cpu, cuda, cuda:N; default cpu).
//   medsad_speed init-checkpoint WEIGHTS OUT.ckpt       an untrained MedSAD-CLIP on WEIGHTS, for predict
// The image input is the one bench/speed/reference.py builds: sin(0.001 i) over the flat index.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include "clip/scratch.h"
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/runtime.h"
#include "model/checkpoint.h"
#include "model/medsad_clip.h"
#include "train/train_step.h"

namespace {
using namespace medsad;

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Median seconds of `iters` runs after one warm-up run; on a GPU each run ends when its kernels do.
double median_seconds(const std::function<void()>& fn, int iters, torch::Device device = torch::kCPU) {
  const auto run = [&] {
    fn();
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  run();
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

torch::Tensor example_images(int64_t batch, int64_t side) {
  return torch::sin(torch::arange(batch * 3 * side * side, torch::kFloat32) * 1e-3).reshape({batch, 3, side, side});
}

// Multiply-adds x 2 of the image tower's parts, per image, over L = 1 + N tokens of width D.
struct VisionFlops {
  double patch_embedding;  // the patch convolution
  double linear;           // one block's q/k/v/out and MLP projections
  double attention;        // one block's two attention products
};
VisionFlops vision_flops_parts(const clip::ClipVisionConfig& v) {
  const double N = static_cast<double>(v.grid_size() * v.grid_size()), L = N + 1, D = static_cast<double>(v.width);
  const double p = static_cast<double>(v.patch_size), M = static_cast<double>(v.mlp_width);
  return {2 * N * 3 * p * p * D, 2 * L * (4 * D * D + 2 * D * M), 2 * 2 * L * L * D};
}

// Multiply-adds x 2 of one image through the whole image tower.
double vision_flops(const clip::ClipVisionConfig& v) {
  const auto f = vision_flops_parts(v);
  return f.patch_embedding + static_cast<double>(v.layers) * (f.linear + f.attention);
}

// Multiply-adds x 2 of one training step per image, frozen backbone: the image tower's forward
// up to the last tap; the backward through the blocks after the first tap (input gradients
// only: the linear layers' products once more, the attention's two products twice, as dQ, dK,
// dV and the weights' gradient need four); the adapters and TPCA's patch projections forward
// and backward (inputs' and weights' gradients: three times their forward). Left out: the text
// tower (two prompts of about 14 tokens: under 1% at B/16), the losses and elementwise work.
double train_step_flops(const clip::ClipVisionConfig& v, const model::MedSadConfig& c, int64_t joint_width) {
  const auto f = vision_flops_parts(v);
  const double N = static_cast<double>(v.grid_size() * v.grid_size()), L = N + 1, D = static_cast<double>(v.width);
  const double J = static_cast<double>(joint_width), taps = static_cast<double>(c.tap_blocks.size());
  const double forward = f.patch_embedding + static_cast<double>(c.tap_blocks.back()) * (f.linear + f.attention);
  const double backward =
      static_cast<double>(c.tap_blocks.back() - c.tap_blocks.front()) * (f.linear + 2 * f.attention);
  const double adapters = c.use_adapters ? taps * 2 * (2 * L * 2 * D * J) : 0;  // seg and det: down and up
  const double tpca = c.use_tpca ? taps * 2 * N * 2 * J * J : 0;                 // q and out over the patches
  return forward + backward + 3 * (adapters + tpca);
}

double matmul_gflops(torch::Dtype dtype, int64_t n, int iters, torch::Device device) {
  const auto a = torch::randn({n, n}).to(device, dtype), b = torch::randn({n, n}).to(device, dtype);
  const double seconds = median_seconds([&] { (void)torch::matmul(a, b); }, iters, device);
  return 2.0 * static_cast<double>(n * n * n) / seconds / 1e9;
}

// The frozen backbone as inference holds it: matrices stored in the compute dtype, text tower
// released (the image tower alone is timed).
clip::ClipModel load_backbone(const std::string& weights, torch::Dtype precision, torch::Device device) {
  auto model = clip::build_clip_model(clip::read_clip_checkpoint(weights), precision);
  model->to(device);
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->set_compute_dtype(precision);
  model->to(device);
  return model;
}

nlohmann::json run_encode(const std::string& weights, torch::Dtype precision, torch::Device device, int64_t batch,
                          int iters, const std::string& embeddings_path) {
  auto model = load_backbone(weights, precision, device);
  model->release_text_tower();
  c10::InferenceMode inference;
  const auto& v = model->config.vision;
  const auto images = example_images(batch, v.image_size).to(device);
  const double seconds = median_seconds([&] { (void)model->visual(images); }, iters, device);
  if (!embeddings_path.empty()) {
    const auto e = model->visual(images).to(torch::kCPU).contiguous();  // [B, E] float32
    std::ofstream out(embeddings_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(e.data_ptr<float>()), static_cast<std::streamsize>(e.numel() * 4));
  }
  const double flops = vision_flops(v) * static_cast<double>(batch);
  return {{"what", "encode"}, {"seconds", seconds}, {"images_per_s", static_cast<double>(batch) / seconds},
          {"gflops", flops / seconds / 1e9}, {"peak_rss_mb", peak_rss_mb()}};
}

// What train-step varies from the design's defaults (4 taps, learned prompts, TPCA, margin 0.2).
struct StepModelOptions {
  clip::PatchStem scratch_stem = clip::ScratchClipOptions{}.stem;
  bool fixed_prompts = false;
  double margin = model::MedSadConfig{}.margin;
};

// WEIGHTS "none": a scratch backbone (ScratchClipOptions with `options.scratch_stem`), trained with
// the rest.
model::MedSadClip build_medsad(const std::string& weights, torch::Dtype precision, torch::Device device,
                               const StepModelOptions& options = {}) {
  model::MedSadConfig config;
  if (options.fixed_prompts) config.prompts = model::PromptMode::Fixed;
  config.margin = options.margin;
  clip::ClipModel backbone{nullptr};
  if (weights == "none") {
    clip::ScratchClipOptions scratch;
    scratch.stem = options.scratch_stem;
    backbone = clip::build_scratch_clip(clip::scratch_clip_config(scratch, clip::Tokenizer::byte_level().vocab_size()));
    config.train_backbone = true;
  } else {
    backbone = load_backbone(weights, precision, device);
  }
  config.resolve(backbone->config.vision.layers, backbone->config.vision.image_size,
                 backbone->config.vision.patch_size);
  model::MedSadClip model(backbone, clip::Tokenizer::byte_level(), config);
  model->set_compute_dtype(precision);
  model->to(device);
  return model;
}

nlohmann::json run_train_step(const std::string& weights, torch::Dtype precision, torch::Device device, int64_t batch,
                              int iters, const StepModelOptions& options, const std::string& profile) {
  auto model = build_medsad(weights, precision, device, options);
  model->train();
  std::vector<torch::Tensor> trainable;
  for (auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-3));
  const int64_t S = model->config.image_size;
  torch::manual_seed(0);
  const auto images = example_images(batch, S).to(device);
  auto masks = (torch::rand({batch, S, S}) < 0.05).to(torch::kFloat32);
  masks.slice(0, 0, batch / 2).zero_();
  masks = masks.to(device);
  const auto labels = (torch::arange(batch) >= batch / 2).to(device, torch::kInt64);
  const auto has_mask = torch::ones({batch}, torch::TensorOptions().dtype(torch::kBool).device(device));
  const auto step = [&] { (void)train::train_step(*model, optimizer, trainable, images, masks, has_mask, labels); };
  if (!profile.empty()) {
    std::ofstream trace_file(profile);
    if (!trace_file) fail(profile, "cannot be written");
    step();  // warm-up outside the trace
    torch::autograd::profiler::RecordProfile trace(trace_file);
    for (int i = 0; i < iters; ++i) step();
  }
  const double seconds = median_seconds(step, iters, device);
  nlohmann::json result = {{"what", "train-step"}, {"seconds", seconds}, {"peak_rss_mb", peak_rss_mb()}};
  if (!model->config.train_backbone) {
    const double flops = train_step_flops(model->backbone->config.vision, model->config, model->backbone->config.embed_dim) *
                         static_cast<double>(batch);
    result["gflop"] = flops / 1e9;
    result["gflops"] = flops / seconds / 1e9;
  }
  return result;
}

void init_checkpoint(const std::string& weights, const std::string& out) {
  auto model = build_medsad(weights, torch::kFloat32, torch::kCPU);
  model::CheckpointInfo info;
  info.config = model->config;
  info.backbone_path = std::filesystem::absolute(weights).string();
  info.backbone_sha256 = sha256_file(weights);
  model::save_checkpoint(out, *model, info);
}

}  // namespace

int main(int argc, char** argv) {
  configure_process();
  CLI::App app{"medsad_speed: the C++ measurements of bench/speed"};
  app.require_subcommand(1);
  std::string weights, out, precision = "bf16", embeddings, device_name = "cpu";
  int64_t batch = 1;
  int iters = 3;
  auto* peak = app.add_subcommand("peak", "matrix-product GFLOP/s, bf16 and fp32");
  auto* encode = app.add_subcommand("encode", "image-tower throughput");
  auto* step = app.add_subcommand("train-step", "one MedSAD-CLIP training step");
  auto* init = app.add_subcommand("init-checkpoint", "an untrained MedSAD-CLIP checkpoint");
  for (auto* cmd : {encode, step, init}) cmd->add_option("weights", weights, "CLIP weights")->required();
  for (auto* cmd : {peak, encode, step}) cmd->add_option("--device", device_name, "cpu, cuda or cuda:N");
  for (auto* cmd : {encode, step}) {
    cmd->add_option("--precision", precision, "fp32 or bf16");
    cmd->add_option("--batch", batch)->check(CLI::Range(1, 1024));
    cmd->add_option("--iters", iters)->check(CLI::Range(1, 1000));
  }
  StepModelOptions step_options;
  std::string scratch_stem = clip::stem_name(step_options.scratch_stem), profile;
  step->add_option("--scratch-stem", scratch_stem, "WEIGHTS none: conv_stack or conv_encoder");
  step->add_flag("--fixed-prompts", step_options.fixed_prompts, "the template ensemble instead of learned prompts");
  step->add_option("--margin", step_options.margin, "margin loss m (0: off)")->check(CLI::Range(0.0, 2.0));
  step->add_option("--profile", profile, "write LibTorch's autograd profile of the timed steps here (Chrome trace)");
  encode->add_option("--embeddings", embeddings, "write the embeddings here (raw float32)");
  init->add_option("out", out, "checkpoint to write")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    const auto device = resolve_device(device_name);
    // peak's fp32 half runs in OpenBLAS's threads.
    configure_thread_wait(argv, device.is_cpu() && (*peak || precision == "fp32"));
    configure_threads(0);
    const auto dtype = configure_precision(precision, device);
    nlohmann::json result;
    if (*peak) {
      configure_precision("bf16");
      const int64_t n = device.is_cuda() ? 8192 : 2048;  // a GPU needs larger products to reach its peak
      result["bf16_gflops"] = matmul_gflops(torch::kBFloat16, n, 20, device);
      configure_precision("fp32");
      set_blas_threads(static_cast<int>(torch::get_num_threads()));
      result["fp32_gflops"] = matmul_gflops(torch::kFloat32, n, device.is_cuda() ? 20 : 3, device);
      result["matrix_side"] = n;
      result["what"] = "peak";
    } else if (*encode) {
      result = run_encode(weights, dtype, device, batch, iters, embeddings);
    } else if (*step) {
      step_options.scratch_stem = clip::stem_from_name(scratch_stem);
      result = run_train_step(weights, dtype, device, batch, iters, step_options, profile);
    } else {
      init_checkpoint(weights, out);
      result = {{"what", "init-checkpoint"}, {"path", out}};
    }
    result["precision"] = precision;
    result["device"] = device.str();
    std::printf("%s\n", result.dump().c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "medsad_speed: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "medsad_speed: error: %s\n", e.what());
  }
  return 1;
}
