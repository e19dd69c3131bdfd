// MedSAD-CLIP on a scratch backbone: the backbone trains and travels inside the checkpoint, and
// a reloaded checkpoint reproduces the model's outputs exactly.
#include "clip/scratch.h"
#include "clip/tiny_scratch_options.h"
#include "clip/tokenizer.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "model/checkpoint.h"
#include "model/medsad_clip.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::model;

namespace {

struct ScratchModel {
  clip::ClipConfig clip_config;
  MedSadConfig config;
  MedSadClip model{nullptr};
};

ScratchModel make_scratch_model(PromptMode prompts,
                                const clip::ScratchClipOptions& o = test::tiny_scratch_options()) {
  ScratchModel m;
  const auto tokenizer = clip::Tokenizer::byte_level();
  m.clip_config = clip::scratch_clip_config(o, tokenizer.vocab_size());
  m.config.object = "brain MRI";
  m.config.prompts = prompts;
  m.config.prompt_length = 4;
  m.config.tpca_heads = 4;
  m.config.train_backbone = true;
  m.config.resolve(o.layers, o.image_size, o.patch_size);
  torch::manual_seed(11);
  m.model = MedSadClip(clip::build_scratch_clip(m.clip_config), tokenizer, m.config);
  return m;
}

}  // namespace

TEST(ScratchModel, BackboneIsTrainedWithTheRest) {
  for (const auto prompts : {PromptMode::Learned, PromptMode::Fixed}) {
    auto m = make_scratch_model(prompts);
    bool has_backbone = false;
    for (const auto& p : m.model->named_parameters()) {
      if (p.key().rfind("backbone.", 0) == 0) {
        has_backbone = true;
        EXPECT_TRUE(p.value().requires_grad()) << p.key();
      }
    }
    ASSERT_TRUE(has_backbone);
    const auto out = m.model->forward(torch::randn({2, 3, 32, 32}));
    (out.anomaly_map.mean() + out.p_det.mean()).backward();
    // Gradient reaches the image stem and the text tower's token embedding (fixed prompts too:
    // their features are recomputed through the trainable text tower).
    const auto& stem = m.model->backbone->visual->stem[0]->as<torch::nn::Conv2dImpl>()->weight;
    ASSERT_TRUE(stem.grad().defined());
    EXPECT_GT(stem.grad().abs().sum().item<double>(), 0);
    const auto& tok = m.model->backbone->text->token_embedding->weight;
    ASSERT_TRUE(tok.grad().defined());
    EXPECT_GT(tok.grad().abs().sum().item<double>(), 0);
  }
}

TEST(ScratchModel, CheckpointCarriesTheBackboneAndReloadsExactly) {
  test::ScratchDir dir;
  for (const auto& options : {test::tiny_scratch_options(), test::tiny_encoder_scratch_options()}) {
    auto m = make_scratch_model(PromptMode::Learned, options);
    m.model->eval();
    CheckpointInfo info;
    info.config = m.config;
    info.backbone_path = "none";
    info.backbone_config = m.clip_config.to_json();
    info.calibration.calibrated = true;
    info.calibration.image_threshold = 0.4;
    const std::string path = dir.file("scratch.ckpt");
    save_checkpoint(path, *m.model, info);

    auto loaded = load_trained_model(path);
    EXPECT_TRUE(loaded.info.config.train_backbone);
    EXPECT_EQ(loaded.model->backbone->config.vision.stem, options.stem);
    EXPECT_DOUBLE_EQ(loaded.info.calibration.image_threshold, 0.4);
    torch::NoGradGuard no_grad;
    const auto images = torch::randn({2, 3, 32, 32});
    const auto expected = m.model->forward(images, true);
    const auto got = loaded.model->forward(images, true);
    EXPECT_TRUE(torch::equal(expected.anomaly_map, got.anomaly_map));
    EXPECT_TRUE(torch::equal(expected.score, got.score));

    // A checkpoint claiming a trained backbone without its config is refused with the file named.
    info.backbone_config = nullptr;
    save_checkpoint(dir.file("broken.ckpt"), *m.model, info);
    try {
      load_trained_model(dir.file("broken.ckpt"));
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), dir.file("broken.ckpt"));
    }
  }
}

TEST(ScratchModel, DamagedOrNonFiniteCheckpointsAreRefused) {
  test::ScratchDir dir;
  auto m = make_scratch_model(PromptMode::Fixed);
  CheckpointInfo info;
  info.config = m.config;
  info.backbone_path = "none";
  info.backbone_config = m.clip_config.to_json();
  const std::string path = dir.file("good.ckpt");
  save_checkpoint(path, *m.model, info);
  ASSERT_NO_THROW(load_trained_model(path));
  const auto expect_refused = [](const std::string& file, const std::string& problem) {
    try {
      load_trained_model(file);
      ADD_FAILURE() << file << ": expected an Error about " << problem;
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), file);
      EXPECT_NE(e.problem().find(problem), std::string::npos) << e.problem();
    }
  };

  // One bit flipped in the tensor data (the file's tail): still a well-formed file, and a weight
  // that merely changed a little would score silently.
  auto bytes = read_file_bytes(path);
  const std::string flipped = dir.file("flipped.ckpt");
  bytes[bytes.size() - 5] ^= 0x01;
  write_file_atomic(flipped, bytes.data(), bytes.size());
  expect_refused(flipped, "damaged checkpoint");

  // A checkpoint written before the digest was recorded loads as it did.
  auto meta = read_safetensors_metadata(path);
  auto medsad_meta = nlohmann::json::parse(meta.at("medsad"));
  ASSERT_TRUE(medsad_meta.contains("tensors_sha256"));
  medsad_meta.erase("tensors_sha256");
  meta["medsad"] = medsad_meta.dump();
  write_safetensors(dir.file("older.ckpt"), read_safetensors(path), meta);
  EXPECT_NO_THROW(load_trained_model(dir.file("older.ckpt")));

  // NaN weights, written with a correct digest (as a diverged run would): refused by name.
  {
    torch::NoGradGuard no_grad;
    m.model->named_parameters()["tpca.0.out_proj.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  save_checkpoint(dir.file("nan.ckpt"), *m.model, info);
  expect_refused(dir.file("nan.ckpt"), "'model.tpca.0.out_proj.weight' holds NaN");
}
