// `medsad train`: supervised MedSAD-CLIP training on a dataset in any supported layout.
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/dataset_options.h"
#include "core/error.h"
#include "core/runtime.h"
#include "train/trainer.h"

namespace medsad::cli {

void setup_train_command(CLI::App& app, Action& action) {
  struct Options {
    train::TrainOptions train;
    DatasetOptions data;
    std::string prompts = "learned", window, image_rule = "f1";
    ComputeOptions compute;
    bool no_tpca = false, no_adapters = false, no_augment = false;
  };
  auto o = std::make_shared<Options>();
  auto& m = o->train.model;
  auto* cmd = app.add_subcommand("train", "train MedSAD-CLIP on labelled normal and abnormal images");
  add_dataset_options(cmd, o->data);
  cmd->add_option("--object", m.object, "organ/modality phrase for the prompts, e.g. \"brain MRI\"")->required();
  cmd->add_option("--weights", o->train.weights,
                  "CLIP backbone checkpoint, or none: a small CLIP-architecture backbone trained from scratch")
      ->required();
  cmd->add_option("--hf-config", o->train.hf_config, "Hugging Face config.json (default: beside the weights)");
  add_clip_activation_option(cmd, o->train.clip_activation);
  cmd->add_option("--bpe", o->train.bpe, "bpe_simple_vocab_16e6.txt.gz (required with CLIP weights; "
                                         "without it --weights none uses a byte-level tokenizer)");
  auto& sc = o->train.scratch;
  cmd->add_option("--scratch-width", sc.width, "--weights none: image tower width (default 192)");
  cmd->add_option("--scratch-layers", sc.layers, "--weights none: image tower blocks (default 4)");
  cmd->add_option("--scratch-patch", sc.patch_size, "--weights none: convolutional stem stride (default 8)")
      ->check(CLI::IsMember({2, 4, 8, 16, 32}));
  std::map<std::string, clip::PatchStem> stems;  // the names checkpoints use (clip::stem_name)
  for (auto stem : {clip::PatchStem::ConvStack, clip::PatchStem::ConvEncoder}) stems[clip::stem_name(stem)] = stem;
  cmd->add_option("--scratch-stem", sc.stem,
                  "--weights none: conv_stack (strided convolutions, the default) or conv_encoder (a small CNN "
                  "with GroupNorm: a hybrid ViT, 1.6x the time per step)")
      ->transform(CLI::CheckedTransformer(stems));
  cmd->add_option("--scratch-stem-channels", sc.stem_channels,
                  "--weights none: conv_encoder's first-stage channels, doubling per stage (default 16)");
  cmd->add_option("--scratch-text-width", sc.text_width, "--weights none: text tower width (default 128)");
  cmd->add_option("--scratch-text-layers", sc.text_layers, "--weights none: text tower blocks (default 2)");
  cmd->add_option("--scratch-embed", sc.embed_dim, "--weights none: joint embedding width (default 128)");
  std::map<std::string, clip::PositionInit> position_inits;
  for (auto init : {clip::PositionInit::Random, clip::PositionInit::SineCosine})
    position_inits[clip::position_init_name(init)] = init;
  cmd->add_option("--scratch-positions", sc.positions,
                  "--weights none: how the image tower's (learned) position embeddings start: random (CLIP's, the "
                  "default) or sincos (MAE's 2-D sine-cosine table)")
      ->transform(CLI::CheckedTransformer(position_inits));
  cmd->add_option("--warmup", o->train.warmup_steps, "linear learning-rate warm-up steps (default 0)");
  add_compute_options(cmd, o->compute);
  add_window_option(cmd, o->window);
  cmd->add_option("--out", o->train.out_dir, "run folder (config.json, last.ckpt, best.ckpt)")->required();
  cmd->add_option("--epochs", o->train.epochs, "epochs (default 20)");
  cmd->add_option("--batch", o->train.batch_size, "batch size (default 8)");
  cmd->add_option("--lr", o->train.lr, "AdamW learning rate, cosine-decayed (default 1e-3)");
  cmd->add_option("--weight-decay", o->train.weight_decay, "AdamW weight decay (default 1e-4)");
  cmd->add_option("--image-size", m.image_size, "model input side (default: the backbone's; 128 for --weights none)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--tap-blocks", m.tap_blocks, "1-based blocks with adapters (default: 4 evenly spaced)");
  cmd->add_option("--prompt-length", m.prompt_length, "learnable context vectors per class (default 8)");
  cmd->add_option("--prompts", o->prompts, "learned or fixed (template ensemble)")
      ->check(CLI::IsMember({"learned", "fixed"}));
  cmd->add_option("--margin", m.margin, "cosine margin of the contrastive loss; 0 disables it (default 0.2)");
  cmd->add_option("--adapter-beta", m.adapter_beta, "adapter residual mix (default 0.1)");
  cmd->add_option("--tpca-heads", m.tpca_heads, "TPCA attention heads (default 8)");
  cmd->add_option("--alpha", m.score_alpha, "image score weight of the Det branch (default 0.5)");
  cmd->add_option("--smooth-sigma", m.smooth_sigma, "Seg map Gaussian sigma at 240 px (default 4; 0 off)");
  cmd->add_option("--lambda-det", m.lambda_det, "weight of the Det BCE loss (default 1)");
  cmd->add_option("--lambda-margin", m.lambda_margin, "weight of the margin loss (default 1)");
  cmd->add_option("--lesion-weight", m.lesion_weight, "weight of lesion pixels in the focal loss (default 1)");
  cmd->add_flag("--normal-dice,!--no-normal-dice", m.dice_on_normal_images,
                "--no-normal-dice: the Dice loss on abnormal images only; --normal-dice (the default, the design's): "
                "normal images' empty masks too");
  cmd->add_option("--temperature", m.temperature, "tau, the logit scale of the image-text cosines (default 100, CLIP's)");
  cmd->add_flag("--no-tpca", o->no_tpca, "ablation: plain cosine maps without Token-Patch Cross-Attention");
  cmd->add_flag("--no-adapters", o->no_adapters, "ablation: CLIP's own projection instead of adapters");
  cmd->add_flag("--no-augment", o->no_augment, "train without augmentation");
  add_image_rule_option(cmd, o->image_rule);
  cmd->add_flag("--resume", o->train.resume, "continue an interrupted run from OUT/last.ckpt");
  cmd->add_flag("--overwrite", o->train.overwrite, "replace a previous run's checkpoints in OUT (refused otherwise)");
  cmd->callback([&action, o] {
    action = [o] {
      apply_window_option(o->window);
      auto options = o->train;
      options.data = resolve_dataset_options(o->data);
      options.seed = options.data.seed;
      options.model.prompts = o->prompts == "fixed" ? model::PromptMode::Fixed : model::PromptMode::Learned;
      options.model.use_tpca = !o->no_tpca;
      options.model.use_adapters = !o->no_adapters;
      options.augment = !o->no_augment;
      options.image_rule = eval::OperatingRule::parse(o->image_rule);
      const auto compute = resolve_compute_options(o->compute);
      options.precision = compute.precision;
      options.device = compute.device;
      if (options.weights == "none" && options.model.image_size > 0) options.scratch.image_size = options.model.image_size;
      const auto summary = train::train(options);
      std::printf("{\"epochs\": %lld, \"first_epoch_loss\": %.6f, \"last_epoch_loss\": %.6f, "
                  "\"best_epoch\": %lld, \"best_validation\": %.6f}\n",
                  (long long)summary.epochs_run, summary.first_epoch_loss, summary.last_epoch_loss,
                  (long long)summary.best_epoch, summary.best_validation);
    };
  });
}

}  // namespace medsad::cli
