#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>
#include <type_traits>

#include <spdlog/spdlog.h>

#include "clip/preprocess.h"
#include "clip/scratch.h"
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "eval/evaluate.h"
#include "model/checkpoint.h"
#include "model/losses.h"
#include "model/medsad_clip.h"
#include "train/train_step.h"

namespace medsad::train {
namespace fs = std::filesystem;
namespace {

// The training split held in memory at the model's input size (uint8 keeps 1000 images at
// 224 px near 150 MB).
struct TrainSet {
  torch::Tensor images;    // [N, 3, S, S] uint8
  torch::Tensor masks;     // [N, S, S] uint8 (zeros for normal images and missing masks)
  torch::Tensor has_mask;  // [N] bool: normal, or abnormal with a mask
  torch::Tensor labels;    // [N] int64
};

TrainSet load_train_set(const std::vector<data::Sample>& samples, int64_t S) {
  TrainSet set;
  const auto N = static_cast<int64_t>(samples.size());
  set.images = torch::empty({N, 3, S, S}, torch::kUInt8);
  set.masks = torch::zeros({N, S, S}, torch::kUInt8);
  set.has_mask = torch::zeros({N}, torch::kBool);
  set.labels = torch::zeros({N}, torch::kInt64);
  for (int64_t i = 0; i < N; ++i) {
    const auto& s = samples[static_cast<size_t>(i)];
    const auto rgb = read_image_rgb(s.image);
    set.images[i] = (data::resize_image(rgb, S) * 255).round().to(torch::kUInt8);
    set.labels[i] = s.label;
    if (!s.mask.empty()) {
      set.masks[i] = data::resize_mask(data::read_mask(s.mask, s.image, rgb.size(1), rgb.size(2)), S).to(torch::kUInt8);
      set.has_mask[i] = true;
    } else {
      set.has_mask[i] = s.label == 0;
    }
  }
  return set;
}

// Seeded Fisher-Yates with our own index draw, identical across standard libraries.
std::vector<int64_t> shuffled(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[rng() % static_cast<uint64_t>(i + 1)]);
  return order;
}

// The key of a parameter in Optimizer::state(): LibTorch 1.x uses the address of its TensorImpl
// printed as text, 2.x the address itself.
template <typename Key>
Key optimizer_state_key(const torch::Tensor& parameter) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << parameter.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}
using OptimizerStateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;

// AdamW moments and step counts as checkpoint tensors "optim.<param>.{exp_avg,exp_avg_sq,step}".
TensorMap optimizer_state(torch::optim::AdamW& optimizer, model::MedSadClipImpl& model) {
  TensorMap out;
  auto& states = optimizer.state();
  for (const auto& p : model.named_parameters(true)) {
    const auto it = states.find(optimizer_state_key<OptimizerStateKey>(p.value()));
    if (it == states.end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out["optim." + p.key() + ".exp_avg"] = s.exp_avg();
    out["optim." + p.key() + ".exp_avg_sq"] = s.exp_avg_sq();
    out["optim." + p.key() + ".step"] = torch::tensor(s.step(), torch::kInt64);
  }
  return out;
}

void restore_optimizer(torch::optim::AdamW& optimizer, model::MedSadClipImpl& model, const TensorMap& tensors) {
  for (const auto& p : model.named_parameters(true)) {
    const auto avg = tensors.find("optim." + p.key() + ".exp_avg");
    if (avg == tensors.end()) continue;
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    const auto device = p.value().device();
    state->exp_avg(avg->second.to(device, /*non_blocking=*/false, /*copy=*/true));
    state->exp_avg_sq(tensors.at("optim." + p.key() + ".exp_avg_sq").to(device, false, true));
    state->step(tensors.at("optim." + p.key() + ".step").item<int64_t>());
    optimizer.state()[optimizer_state_key<OptimizerStateKey>(p.value())] = std::move(state);
  }
}

// "stem is \"conv_encoder\" in the checkpoint, \"conv_stack\" now; ..." for the first few
// fields where `recorded` and `now` differ, so that a refused --resume says which option to give.
std::string json_differences(const nlohmann::json& recorded, const nlohmann::json& now) {
  std::string text;
  int listed = 0;
  const auto patch = nlohmann::json::diff(recorded, now);
  for (const auto& op : patch) {
    if (listed == 3) {
      text += "; ...";
      break;
    }
    const nlohmann::json::json_pointer where(op.at("path").get<std::string>());
    const std::string was = recorded.contains(where) ? json_text(recorded.at(where)) : "absent";
    const std::string is = now.contains(where) ? json_text(now.at(where)) : "absent";
    std::string name = where.to_string().substr(1);
    std::replace(name.begin(), name.end(), '/', '.');
    text += (listed++ ? "; " : "") + name + " is " + was + " in the checkpoint, " + is + " now";
  }
  return text;
}

std::string format_duration(double seconds) {
  const int s = static_cast<int>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  return buf;
}

}  // namespace

void TrainOptions::validate() const {
  if (weights.empty()) fail("", "--weights is required (a CLIP checkpoint, or none)");
  if (bpe.empty() && weights != "none") fail("", "--bpe is required with CLIP weights");
  if (weights == "none" && clip_activation != "auto")
    fail("", "--clip-activation applies to CLIP weights; the --weights none backbone uses GELU");
  if (weights == "none" && !hf_config.empty())
    fail("", "--hf-config describes CLIP weights; the --weights none backbone takes --scratch-* options");
  // An option that would change nothing is refused rather than silently ignored. image_size is
  // not compared: --image-size sets it for the scratch backbone only.
  const clip::ScratchClipOptions defaults;
  const bool scratch_changed = scratch.patch_size != defaults.patch_size || scratch.stem != defaults.stem ||
                               scratch.stem_channels != defaults.stem_channels || scratch.width != defaults.width ||
                               scratch.layers != defaults.layers || scratch.text_width != defaults.text_width ||
                               scratch.text_layers != defaults.text_layers || scratch.embed_dim != defaults.embed_dim ||
                               scratch.positions != defaults.positions;
  if (weights != "none" && scratch_changed)
    fail("", "--scratch-* options shape the --weights none backbone; CLIP weights bring their own architecture");
  if (scratch.stem != clip::PatchStem::ConvEncoder && scratch.stem_channels != defaults.stem_channels)
    fail("", "--scratch-stem-channels applies to --scratch-stem conv_encoder only");
  if (out_dir.empty()) fail("", "--out is required");
  if (epochs < 1 || epochs > 100000) fail("", "--epochs must be between 1 and 100000, got " + std::to_string(epochs));
  if (batch_size < 1 || batch_size > 4096)
    fail("", "--batch must be between 1 and 4096, got " + std::to_string(batch_size));
  if (!(lr > 0 && lr < 10)) fail("", "--lr must be in (0, 10)");
  if (!(weight_decay >= 0 && weight_decay < 1)) fail("", "--weight-decay must be in [0, 1)");
  if (warmup_steps < 0 || warmup_steps > 10000000) fail("", "--warmup must be between 0 and 10000000 steps");
  if (resume && overwrite) fail("", "--resume and --overwrite exclude each other");
}

TrainSummary train(const TrainOptions& o) {
  o.validate();
  // A new run's first epoch would replace a finished run's best.ckpt with a worse one.
  if (!o.resume && !o.overwrite)
    for (const char* name : {"best.ckpt", "last.ckpt"})
      if (fs::exists(fs::path(o.out_dir) / name))
        fail(o.out_dir, std::string("holds a previous run's ") + name +
                            ": give --resume to continue it, --overwrite to replace it, or another --out");
  const auto dataset = data::load_dataset(o.data);
  std::fprintf(stderr, "%s", data::dataset_summary(dataset).c_str());
  const auto train_samples = dataset.split(data::Split::Train);
  const auto valid_samples = dataset.split(data::Split::Valid);
  if (train_samples.empty()) fail(o.data.root, "the training split is empty");
  if (valid_samples.empty()) fail(o.data.root, "the validation split is empty");
  int64_t train_abnormal = 0;
  for (const auto& s : train_samples) train_abnormal += s.label;
  if (train_abnormal == 0 || train_abnormal == static_cast<int64_t>(train_samples.size()))
    fail(o.data.root, "the training split holds only " + std::string(train_abnormal ? "abnormal" : "normal") +
                          " images; supervised training needs both classes");
  // Validation reads its images every epoch and would leave out one it cannot read, choosing the
  // model and its thresholds without it: each is read once here, before any work.
  for (const auto& s : valid_samples) (void)read_image_rgb(s.image);

  const std::string last_path = (fs::path(o.out_dir) / "last.ckpt").string();
  const std::string best_path = (fs::path(o.out_dir) / "best.ckpt").string();

  const bool scratch = o.weights == "none";
  const auto tokenizer = o.bpe.empty() ? clip::Tokenizer::byte_level() : clip::Tokenizer::from_bpe_file(o.bpe);
  model::MedSadConfig config = o.model;
  torch::manual_seed(o.seed);
  clip::ClipModel clip_model{nullptr};
  clip::ImagePreprocess preprocess;
  std::string backbone_sha;
  if (scratch) {
    clip_model = clip::build_scratch_clip(clip::scratch_clip_config(o.scratch, tokenizer.vocab_size()),
                                          o.scratch.positions);
    config.train_backbone = true;
  } else {
    const auto checkpoint = clip::read_clip_checkpoint(o.weights, o.hf_config, o.clip_activation);
    backbone_sha = clip::weights_sha256(o.weights);
    preprocess = checkpoint.preprocess;
    clip_model = clip::build_clip_model(checkpoint, o.precision);  // frozen: matrices stored in bf16 once
    config.train_backbone = false;
  }
  const auto& backbone_config = clip_model->config;
  config.resolve(backbone_config.vision.layers, backbone_config.vision.image_size, backbone_config.vision.patch_size);
  make_folders(o.out_dir);  // once every option has been checked
  model::MedSadClip model(clip_model, tokenizer, config);
  model->set_compute_dtype(o.precision);
  model->to(o.device);

  model::CheckpointInfo info;
  info.config = config;
  info.backbone_path = scratch ? "none" : fs::absolute(o.weights).string();
  info.backbone_sha256 = backbone_sha;
  info.backbone_config = backbone_config.to_json();
  info.bpe_path = o.bpe.empty() ? "" : fs::absolute(o.bpe).string();
  info.training = {{"epochs", o.epochs}, {"batch", o.batch_size}, {"lr", o.lr}, {"weight_decay", o.weight_decay},
                   {"seed", o.seed}, {"augment", o.augment}, {"abnormal_budget", o.data.abnormal_budget},
                   {"warmup_steps", o.warmup_steps},
                   {"precision", o.precision == torch::kBFloat16 ? "bf16" : "fp32"}, {"device", o.device.str()}};
  if (scratch) info.training["scratch_positions"] = clip::position_init_name(o.scratch.positions);  // how it began
  // config.json describes the checkpoints beside it: written with this run's first one, so that a
  // run refused (--resume with other options) or failed before then leaves a previous run's as it was.
  const nlohmann::json config_record = {{"model", config.to_json()}, {"training", info.training},
                                        {"backbone", info.backbone_path}, {"backbone_sha256", backbone_sha},
                                        {"backbone_config", backbone_config.to_json()},
                                        {"bpe", info.bpe_path}, {"data", o.data.root}};
  const std::string config_text = json_text(config_record, 2) + "\n";
  bool config_written = false;

  auto params = model->parameters();
  std::vector<torch::Tensor> trainable;
  for (auto& p : params) if (p.requires_grad()) trainable.push_back(p);
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));

  TrainSummary summary;
  int64_t start_epoch = 0;
  double best = -1;
  if (o.resume) {
    if (!fs::exists(last_path)) fail(last_path, "--resume: no last.ckpt to continue from");
    const auto resumed = model::read_checkpoint_info(last_path);
    if (resumed.backbone_sha256 != backbone_sha) fail(last_path, "--resume: trained on another backbone");
    if (resumed.backbone_config.is_object() && resumed.backbone_config != info.backbone_config)
      fail(last_path, "--resume: the backbone's configuration differs from this run's "
                      "(--hf-config, --clip-activation or --scratch-* options): " +
                          json_differences(resumed.backbone_config, info.backbone_config));
    if (resumed.config.to_json() != config.to_json())
      fail(last_path, "--resume: the model options differ from this run's: " +
                          json_differences(resumed.config.to_json(), config.to_json()));
    const auto tensors = model::read_checkpoint_tensors(last_path);
    model::load_checkpoint_weights(last_path, tensors, *model);
    restore_optimizer(optimizer, *model, tensors);
    start_epoch = resumed.training.value("epoch", int64_t(0));
    best = resumed.training.value("best_validation", -1.0);
    summary.best_epoch = resumed.training.value("best_epoch", int64_t(0));
    if (!fs::exists(best_path)) best = -1;  // lost: the next epoch writes it again
    spdlog::info("resuming after epoch {}", start_epoch);
  }

  const int64_t S = config.image_size;
  const auto set = load_train_set(train_samples, S);
  const int64_t N = set.images.size(0);
  const int64_t steps_per_epoch = (N + o.batch_size - 1) / o.batch_size;
  const int64_t total_steps = steps_per_epoch * o.epochs;
  const bool tty = ::isatty(STDERR_FILENO);
  const auto started = std::chrono::steady_clock::now();
  int64_t steps_done_here = 0;

  for (int64_t epoch = start_epoch; epoch < o.epochs; ++epoch) {
    torch::manual_seed(o.seed * 1000003 + static_cast<uint64_t>(epoch));  // resumable, reproducible augmentation
    model->train();
    const auto order = shuffled(N, o.seed * 7919 + static_cast<uint64_t>(epoch));
    double loss_sum = 0, seg_sum = 0, det_sum = 0, margin_sum = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      const int64_t global_step = epoch * steps_per_epoch + step;
      const double warmup = o.warmup_steps > 0 ? std::min(1.0, (global_step + 1.0) / o.warmup_steps) : 1.0;
      const double lr = o.lr * warmup * 0.5 * (1 + std::cos(M_PI * static_cast<double>(global_step) / total_steps));
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const auto begin = order.begin() + step * o.batch_size;
      const auto end = order.begin() + std::min(N, (step + 1) * o.batch_size);
      const auto idx = torch::tensor(std::vector<int64_t>(begin, end));
      auto images = set.images.index_select(0, idx).to(torch::kFloat32) / 255.0;
      auto masks = set.masks.index_select(0, idx).to(torch::kFloat32);
      if (o.augment) data::augment_batch(images, masks, {});
      images = clip::normalize_image(images, preprocess);  // [B, 3, S, S]
      const auto on_device = [&](const torch::Tensor& t) { return t.to(o.device); };
      const auto terms = train_step(*model, optimizer, trainable, on_device(images), on_device(masks),
                                    on_device(set.has_mask.index_select(0, idx)), on_device(set.labels.index_select(0, idx)));
      const double loss = terms.total.item<double>();
      // Stop before a NaN reaches a checkpoint: last.ckpt keeps the last finished epoch.
      if (!std::isfinite(loss))
        fail(o.out_dir, "training diverged at epoch " + std::to_string(epoch + 1) + ", step " +
                            std::to_string(step + 1) + " (the loss is not finite); try a lower --lr or more --warmup");
      loss_sum += loss;
      seg_sum += terms.seg.item<double>();
      det_sum += terms.det.item<double>();
      margin_sum += terms.margin.item<double>();
      ++steps_done_here;
      if (tty) {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const double eta = elapsed / steps_done_here * (total_steps - global_step - 1);
        std::fprintf(stderr, "\repoch %lld/%lld  step %lld/%lld  loss %.4f  eta %s   ", (long long)epoch + 1,
                     (long long)o.epochs, (long long)step + 1, (long long)steps_per_epoch, loss,
                     format_duration(eta).c_str());
      }
    }
    if (tty) std::fprintf(stderr, "\n");
    const double epoch_loss = loss_sum / steps_per_epoch;
    if (epoch == start_epoch) summary.first_epoch_loss = epoch_loss;
    summary.last_epoch_loss = epoch_loss;

    model->eval();
    const auto results = eval::evaluate_samples(*model, preprocess, valid_samples, o.batch_size, false);
    const double score = eval::selection_score(results);
    const bool improved = score > best;
    if (improved) {
      best = score;
      summary.best_epoch = epoch + 1;
    }
    info.training["epoch"] = epoch + 1;
    info.training["best_validation"] = best;
    info.training["best_epoch"] = summary.best_epoch;
    info.training["loss"] = epoch_loss;
    // best before last: last.ckpt records the epoch as done, so a run killed between the two
    // writes redoes the epoch on --resume rather than losing its best checkpoint.
    if (!config_written) write_file_atomic((fs::path(o.out_dir) / "config.json").string(), config_text);
    config_written = true;
    if (improved) save_checkpoint(best_path, *model, info);
    save_checkpoint(last_path, *model, info, optimizer_state(optimizer, *model));
    // How far apart the two prompts are: at cosine ~1 every Seg and Det logit is near 0.
    double prompt_cosine = 0;
    {
      torch::NoGradGuard no_grad;
      const auto text = model->prompts->forward().global;  // [2, E] unit rows
      prompt_cosine = (text[0] * text[1]).sum().item<double>();
    }
    spdlog::info("epoch {}/{}: loss {:.4f} (seg {:.4f}, det {:.4f}, margin {:.4f}), prompt cosine {:.4f}, "
                 "validation score {:.4f}{}",
                 epoch + 1, o.epochs, epoch_loss, seg_sum / steps_per_epoch, det_sum / steps_per_epoch,
                 margin_sum / steps_per_epoch, prompt_cosine, score, improved ? " (best)" : "");
    summary.epochs_run = epoch + 1;
  }
  summary.best_validation = best;

  // Calibrate the best model on validation and store the thresholds in best.ckpt.
  const auto best_tensors = model::read_checkpoint_tensors(best_path);
  auto best_info = model::read_checkpoint_info(best_path);
  model::load_checkpoint_weights(best_path, best_tensors, *model);
  model->eval();
  const auto results = eval::evaluate_samples(*model, preprocess, valid_samples, o.batch_size, false);
  best_info.calibration = eval::calibrate(results, o.image_rule);
  if (!best_info.calibration.calibrated)
    spdlog::warn("validation split lacks a class: thresholds left at 0.5 (uncalibrated)");
  save_checkpoint(best_path, *model, best_info);
  spdlog::info("best epoch {} (validation score {:.4f}); image threshold {:.4f}, pixel threshold {:.4f}",
               summary.best_epoch, best, best_info.calibration.image_threshold, best_info.calibration.pixel_threshold);
  return summary;
}

}  // namespace medsad::train
