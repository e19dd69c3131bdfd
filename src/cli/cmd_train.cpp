// `medsad train`: supervised MedSAD-CLIP training on a dataset in any supported layout.
#include <sstream>

#include "cli/commands.h"
#include "cli/dataset_options.h"
#include "core/error.h"
#include "train/trainer.h"

namespace medsad::cli {

void setup_train_command(CLI::App& app, Action& action) {
  struct Options {
    train::TrainOptions train;
    DatasetOptions data;
    std::string prompts = "learned";
    bool no_tpca = false, no_adapters = false, no_augment = false;
  };
  auto o = std::make_shared<Options>();
  auto& m = o->train.model;
  auto* cmd = app.add_subcommand("train", "train MedSAD-CLIP on labelled normal and abnormal images");
  add_dataset_options(cmd, o->data);
  cmd->add_option("--object", m.object, "organ/modality phrase for the prompts, e.g. \"brain MRI\"")->required();
  cmd->add_option("--weights", o->train.weights, "CLIP backbone checkpoint")->required();
  cmd->add_option("--hf-config", o->train.hf_config, "Hugging Face config.json (default: beside the weights)");
  cmd->add_option("--bpe", o->train.bpe, "bpe_simple_vocab_16e6.txt.gz")->required();
  cmd->add_option("--out", o->train.out_dir, "run folder (config.json, last.ckpt, best.ckpt)")->required();
  cmd->add_option("--epochs", o->train.epochs, "epochs (default 20)");
  cmd->add_option("--batch", o->train.batch_size, "batch size (default 8)");
  cmd->add_option("--lr", o->train.lr, "AdamW learning rate, cosine-decayed (default 1e-3)");
  cmd->add_option("--weight-decay", o->train.weight_decay, "AdamW weight decay (default 1e-4)");
  cmd->add_option("--image-size", m.image_size, "model input side (default: the backbone's)");
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
  cmd->add_flag("--no-tpca", o->no_tpca, "ablation: plain cosine maps without Token-Patch Cross-Attention");
  cmd->add_flag("--no-adapters", o->no_adapters, "ablation: CLIP's own projection instead of adapters");
  cmd->add_flag("--no-augment", o->no_augment, "train without augmentation");
  cmd->add_flag("--resume", o->train.resume, "continue an interrupted run from OUT/last.ckpt");
  cmd->callback([&action, o] {
    action = [o] {
      auto options = o->train;
      options.data = resolve_dataset_options(o->data);
      options.seed = options.data.seed;
      options.model.prompts = o->prompts == "fixed" ? model::PromptMode::Fixed : model::PromptMode::Learned;
      options.model.use_tpca = !o->no_tpca;
      options.model.use_adapters = !o->no_adapters;
      options.augment = !o->no_augment;
      const auto summary = train::train(options);
      std::printf("{\"epochs\": %lld, \"first_epoch_loss\": %.6f, \"last_epoch_loss\": %.6f, "
                  "\"best_epoch\": %lld, \"best_validation\": %.6f}\n",
                  (long long)summary.epochs_run, summary.first_epoch_loss, summary.last_epoch_loss,
                  (long long)summary.best_epoch, summary.best_validation);
    };
  });
}

}  // namespace medsad::cli
