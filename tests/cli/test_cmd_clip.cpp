// `medsad clip tokenize|embed|info` run as a user would, against the shared reference fixture
// and against a second CLIP of another shape made by tests/tools/make_clip_fixture.py (an
// independent float64 Python implementation), plus the one-line errors for bad inputs.
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "clip/weights.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "test_support.h"

using namespace medsad;
using nlohmann::json;

namespace {

constexpr double kTolerance = 1e-4;

// Shell-quotes one argument.
std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

torch::Tensor from_nested(const json& rows) {
  std::vector<double> flat;
  int64_t cols = 0;
  for (const auto& row : rows) {
    cols = static_cast<int64_t>(row.size());
    for (double v : row) flat.push_back(v);
  }
  return torch::tensor(flat, torch::kFloat64).reshape({static_cast<int64_t>(rows.size()), cols});
}

double max_abs_diff(const json& got, const torch::Tensor& expected) {
  const auto g = from_nested(got);
  EXPECT_EQ(g.sizes(), expected.sizes());
  if (g.sizes() != expected.sizes()) return 1e9;
  return (g - expected.to(torch::kFloat64)).abs().max().item<double>();
}

json run_json(const std::string& args) {
  const auto r = test::run_medsad(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out) : json::object();
}

// One line on stderr, naming the file, exit 1.
void expect_one_line_error(const test::CommandResult& r, const std::string& must_contain) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("medsad: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.err;
}

const char* kFormats[] = {"openai_jit.pt", "openclip_state_dict.pt", "hf_model.safetensors"};

}  // namespace

TEST(CmdClip, TokenizeMatchesReferenceTokens) {
  const auto ref = read_safetensors(test::fixture("reference.safetensors")).at("tokens");
  const auto texts = json::parse(read_file_text(test::fixture("reference.json")))["texts"];
  std::string args = "clip tokenize --bpe " + q(test::bpe_path());
  for (const auto& t : texts) args += " --text " + q(t.get<std::string>());
  const auto out = run_json(args);
  ASSERT_EQ(out["tokens"].size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto row = out["tokens"][i].get<std::vector<int64_t>>();
    const auto expected = ref[static_cast<int64_t>(i)];
    EXPECT_TRUE(torch::equal(torch::tensor(row), expected)) << texts[i];
  }
}

TEST(CmdClip, EmbedMatchesReferenceForEveryFormat) {
  const auto ref = read_safetensors(test::fixture("reference.safetensors"));
  const auto texts = json::parse(read_file_text(test::fixture("reference.json")))["texts"];
  for (const char* format : kFormats) {
    test::ScratchDir dir;
    std::string args = "clip embed --weights " + q(test::fixture(format)) + " --bpe " + q(test::bpe_path()) +
                       " --image " + q(test::fixture("image1.png")) + " --image " + q(test::fixture("image2.png")) +
                       " --block-tokens 1 --block-tokens 2 --block-tokens 3 --block-tokens 4 --out " +
                       q(dir.file("blocks.safetensors"));
    for (const auto& t : texts) args += " --text " + q(t.get<std::string>());
    const auto out = run_json(args);
    EXPECT_TRUE(torch::equal(from_nested(out["tokens"]).to(torch::kInt64), ref.at("tokens"))) << format;
    EXPECT_LT(max_abs_diff(out["image_embeddings"], ref.at("image_embeds")), kTolerance) << format;
    EXPECT_LT(max_abs_diff(out["text_embeddings"], ref.at("text_embeds")), kTolerance) << format;
    const auto blocks = read_safetensors(dir.file("blocks.safetensors"));
    for (int b = 1; b <= 4; ++b) {
      const std::string key = "image1_block" + std::to_string(b) + "_tokens";
      ASSERT_TRUE(blocks.count(key)) << key;
      EXPECT_LT((blocks.at(key) - ref.at(key)).abs().max().item<double>(), kTolerance) << format << " " << key;
    }
  }
}

TEST(CmdClip, EmbedAtAnotherInputSizeMatchesReference) {
  const auto ref = read_safetensors(test::fixture("reference.safetensors"));
  const auto out = run_json("clip embed --weights " + q(test::fixture("openai_jit.pt")) + " --image-size 160 --image " +
                            q(test::fixture("image1_s160.png")) + " --image " + q(test::fixture("image2_s160.png")));
  EXPECT_LT(max_abs_diff(out["image_embeddings"], ref.at("image_embeds_s160")), kTolerance);
  EXPECT_TRUE(out["text_embeddings"].empty());
}

// A CLIP of another shape: widths 192/128, 3/2 blocks, patch 14, native input 98, context 40,
// embedding 96; alternative input 130 (not a multiple of 14).
class CmdClipOtherShape : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new test::ScratchDir();
    const std::string cmd = "/usr/bin/python3 " + q(std::string(MEDSAD_SOURCE_DIR) + "/tests/tools/make_clip_fixture.py") +
                            " " + q(dir->path().string()) + " " + q(test::bpe_path());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "fixture generator failed (needs python3-torch, python3-pil, python3-regex)";
    reference = json::parse(read_file_text(dir->file("reference.json")));
  }
  static void TearDownTestSuite() { delete dir; }
  static test::ScratchDir* dir;
  static json reference;
};
test::ScratchDir* CmdClipOtherShape::dir = nullptr;
json CmdClipOtherShape::reference;

TEST_F(CmdClipOtherShape, EmbedMatchesIndependentReferenceForEveryFormat) {
  std::vector<std::string> formats(std::begin(kFormats), std::end(kFormats));
  formats.push_back("open_clip_model.safetensors");
  formats.push_back("hf_sharded/model.safetensors.index.json");
  for (const auto& format : formats) {
    std::string args = "clip embed --weights " + q(dir->file(format)) + " --bpe " + q(test::bpe_path()) + " --image " +
                       q(dir->file("image1.png")) + " --image " + q(dir->file("image2.png")) +
                       " --block-tokens 1 --block-tokens 3 --out " + q(dir->file(std::string(format) + ".blocks"));
    for (const auto& t : reference["texts"]) args += " --text " + q(t.get<std::string>());
    const auto out = run_json(args);
    EXPECT_EQ(out["tokens"], reference["tokens"]) << format;
    EXPECT_LT((from_nested(out["image_embeddings"]) - from_nested(reference["image_embeds"])).abs().max().item<double>(),
              kTolerance) << format;
    EXPECT_LT((from_nested(out["text_embeddings"]) - from_nested(reference["text_embeds"])).abs().max().item<double>(),
              kTolerance) << format;
    const auto blocks = read_safetensors(dir->file(std::string(format) + ".blocks"));
    for (const char* b : {"1", "3"}) {
      const auto got = blocks.at(std::string("image1_block") + b + "_tokens").to(torch::kFloat64);
      const auto expected = from_nested(reference["block_tokens"][b][0]);
      EXPECT_LT((got - expected).abs().max().item<double>(), kTolerance) << format << " block " << b;
    }
  }
}

TEST_F(CmdClipOtherShape, GeluWeightsMatchTheirReference) {
  // A state dict does not record its activation: --clip-activation gelu gives the GELU reference
  // (which QuickGELU misses by about 0.02); a Hugging Face config's hidden_act "gelu" does the same.
  auto config = json::parse(read_file_text(dir->file("config.json")));
  config["vision_config"]["hidden_act"] = "gelu";
  config["text_config"]["hidden_act"] = "gelu";
  write_file_atomic(dir->file("config_gelu.json"), config.dump());
  const std::string images = " --bpe " + q(test::bpe_path()) + " --image " + q(dir->file("image1.png")) + " --image " +
                             q(dir->file("image2.png")) + " --text " + q(reference["texts"][0].get<std::string>());
  const auto image_gap = [](const json& out, const char* key) {
    return (from_nested(out["image_embeddings"]) - from_nested(reference[key])).abs().max().item<double>();
  };
  const auto text_gap = [](const json& out, const char* key) {
    const auto expected = from_nested(reference[key]).select(0, 0);
    return (from_nested(out["text_embeddings"]).select(0, 0) - expected).abs().max().item<double>();
  };
  const std::string state_dict = "clip embed --weights " + q(dir->file("openclip_state_dict.pt")) + images;
  for (const auto& args : {state_dict + " --clip-activation gelu",
                           "clip embed --weights " + q(dir->file("open_clip_model.safetensors")) + images +
                               " --clip-activation gelu",
                           "clip embed --weights " + q(dir->file("hf_model.safetensors")) + " --hf-config " +
                               q(dir->file("config_gelu.json")) + images}) {
    SCOPED_TRACE(args);
    const auto out = run_json(args);
    EXPECT_LT(image_gap(out, "image_embeds_gelu"), kTolerance);
    EXPECT_LT(text_gap(out, "text_embeds_gelu"), kTolerance);
  }
  const auto assumed = run_json(state_dict);  // QuickGELU, as OpenAI's weights
  EXPECT_LT(image_gap(assumed, "image_embeds"), kTolerance);
  EXPECT_GT(image_gap(assumed, "image_embeds_gelu"), 100 * kTolerance);
  for (const char* file : {"openclip_state_dict.pt", "open_clip_model.safetensors"}) {
    const auto info = test::run_medsad("clip info --weights " + q(dir->file(file)));
    EXPECT_NE(info.out.find("--clip-activation gelu"), std::string::npos) << info.out;
  }
  const auto hf_info = test::run_medsad("clip info --weights " + q(dir->file("hf_model.safetensors")));
  EXPECT_NE(hf_info.out.find("format: Hugging Face CLIPModel"), std::string::npos) << hf_info.out;
  EXPECT_EQ(hf_info.out.find("--clip-activation"), std::string::npos) << hf_info.out;
  const auto bad = test::run_medsad(state_dict + " --clip-activation relu");
  EXPECT_EQ(bad.exit_code, 1);
}

TEST_F(CmdClipOtherShape, ShardedWeightsArePinnedShardByShard) {
  // A copy of the sharded checkpoint: its digest (what a trained model pins its backbone by) is
  // stable, and changes when a byte of a shard does, though the index itself is unchanged.
  test::ScratchDir copy;
  for (const auto& e : std::filesystem::directory_iterator(dir->file("hf_sharded")))
    std::filesystem::copy_file(e.path(), copy.file(e.path().filename().string()));
  const std::string index = copy.file("model.safetensors.index.json");
  const std::string shard = copy.file("model-00002-of-00002.safetensors");
  const std::string before = clip::weights_sha256(index);
  EXPECT_EQ(before, clip::weights_sha256(dir->file("hf_sharded/model.safetensors.index.json")));
  std::string bytes = read_file_text(shard);
  bytes[bytes.size() - 3] ^= 0x40;
  write_file_atomic(shard, bytes);
  EXPECT_NE(clip::weights_sha256(index), before);

  // A missing shard and an index without a weight_map: one line naming the file.
  std::filesystem::remove(shard);
  auto r = test::run_medsad("clip info --weights " + q(index));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(shard + ": shard listed in"), std::string::npos) << r.err;
  write_file_atomic(index, "{\"metadata\": {}}");
  r = test::run_medsad("clip info --weights " + q(index));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("weight_map"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(CmdClipOtherShape, EmbedAtSizeThatIsNotAMultipleOfThePatch) {
  const auto out = run_json("clip embed --weights " + q(dir->file("hf_model.safetensors")) + " --image-size 130 --image " +
                            q(dir->file("image1_alt.png")) + " --image " + q(dir->file("image2_alt.png")));
  EXPECT_LT((from_nested(out["image_embeddings"]) - from_nested(reference["image_embeds_alt"])).abs().max().item<double>(),
            kTolerance);
}

TEST_F(CmdClipOtherShape, InfoReportsTheInferredArchitecture) {
  const auto r = test::run_medsad("clip info --weights " + q(dir->file("openai_jit.pt")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ViT width 192, 3 blocks, 3 heads, mlp 640, patch 14, input 98"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("transformer width 128, 2 blocks, 2 heads, mlp 384, context 40"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("embedding: 96"), std::string::npos) << r.out;
}

// ---- bad input: one clear line, exit 1 -------------------------------------------------------

TEST(CmdClipErrors, NotACheckpoint) {
  test::ScratchDir dir;
  std::ofstream(dir.file("notes.pt")) << "these are not weights\n";
  expect_one_line_error(test::run_medsad("clip info --weights " + q(dir.file("notes.pt"))),
                        dir.file("notes.pt") + ": not a CLIP checkpoint");
}

TEST(CmdClipErrors, MissingFile) {
  expect_one_line_error(test::run_medsad("clip info --weights /nonexistent/w.pt"), "/nonexistent/w.pt");
}

TEST(CmdClipErrors, TruncatedFilesOfEveryFormat) {
  for (const char* format : kFormats) {
    test::ScratchDir dir;
    const auto bytes = read_file_bytes(test::fixture(format));
    const std::string cut = dir.file(format);
    std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    expect_one_line_error(test::run_medsad("clip info --weights " + q(cut)), cut + ": ");
  }
}

TEST(CmdClipErrors, MissingAndMisshapenTensors) {
  test::ScratchDir dir;
  auto tensors = read_safetensors(test::fixture("hf_model.safetensors"));
  auto missing = tensors;
  missing.erase("vision_model.post_layernorm.weight");
  write_safetensors(dir.file("missing.safetensors"), missing);
  std::filesystem::copy_file(test::fixture("hf_config.json"), dir.file("config.json"));
  expect_one_line_error(test::run_medsad("clip info --weights " + q(dir.file("missing.safetensors"))),
                        "missing tensor 'visual.ln_post.weight'");
  auto misshapen = tensors;
  misshapen["text_model.final_layer_norm.bias"] = torch::zeros({65});
  write_safetensors(dir.file("misshapen.safetensors"), misshapen);
  expect_one_line_error(test::run_medsad("clip info --weights " + q(dir.file("misshapen.safetensors"))),
                        "tensor 'ln_final.bias' has shape [65], expected [64]");
}

TEST(CmdClipErrors, ResNetClipIsRefused) {
  test::ScratchDir dir;
  write_safetensors(dir.file("rn50.safetensors"), {{"visual.layer1.0.conv1.weight", torch::zeros({64, 64, 1, 1})},
                                                   {"visual.attnpool.positional_embedding", torch::zeros({50, 2048})},
                                                   {"token_embedding.weight", torch::zeros({10, 8})}});
  expect_one_line_error(test::run_medsad("clip info --weights " + q(dir.file("rn50.safetensors"))),
                        "ResNet CLIP image towers are not supported");
}

TEST(CmdClipErrors, BadImageAndAbsurdOptions) {
  test::ScratchDir dir;
  std::ofstream(dir.file("scan.png")) << "not a png";
  const std::string w = " --weights " + q(test::fixture("openclip_state_dict.pt"));
  expect_one_line_error(test::run_medsad("clip embed" + w + " --image " + q(dir.file("scan.png"))),
                        dir.file("scan.png") + ": cannot decode the image");
  // Cut-off files: one line naming the file, no decoder chatter (libpng, libjpeg) around it.
  const std::string whole = read_file_text(test::fixture("image1.png"));
  std::ofstream(dir.file("cut.png"), std::ios::binary) << whole.substr(0, whole.size() / 2);
  expect_one_line_error(test::run_medsad("clip embed" + w + " --image " + q(dir.file("cut.png"))),
                        dir.file("cut.png") + ": truncated PNG");
  std::vector<uchar> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", cv::Mat(64, 64, CV_8UC3, cv::Scalar(10, 200, 90)), jpeg));
  std::ofstream(dir.file("cut.jpg"), std::ios::binary).write(reinterpret_cast<const char*>(jpeg.data()),
                                                              static_cast<std::streamsize>(jpeg.size() / 2));
  expect_one_line_error(test::run_medsad("clip embed" + w + " --image " + q(dir.file("cut.jpg"))),
                        dir.file("cut.jpg") + ": truncated JPEG");
  expect_one_line_error(test::run_medsad("clip embed" + w + " --image-size 3 --image " + q(test::fixture("image1.png"))),
                        "--image-size must be between");
  expect_one_line_error(test::run_medsad("clip embed" + w + " --block-tokens 9 --out x.safetensors --image " +
                                         q(test::fixture("image1.png"))),
                        "--block-tokens 9 is outside");
  expect_one_line_error(test::run_medsad("clip tokenize --bpe " + q(dir.file("scan.png")) + " --text hi"),
                        dir.file("scan.png"));
}
