// The HTML report: its curves against the exact metrics, its gallery against a brute-force count
// of outcomes, no external reference, and the page rendered by headless Chromium (Debian's
// chromium, installed by scripts/setup.sh), whose screenshot is kept in BUILD/artifacts/.
#include <filesystem>
#include <random>
#include <regex>

#include <opencv2/imgcodecs.hpp>

#include "core/file_io.h"
#include "data/image_io.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::eval;
namespace fs = std::filesystem;

namespace {

double trapezoid(const std::vector<std::pair<double, double>>& points) {
  double area = 0;
  for (size_t i = 1; i < points.size(); ++i)
    area += (points[i].first - points[i - 1].first) * (points[i].second + points[i - 1].second) / 2;
  return area;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Images on disk with maps, masks and scores; labels alternate, scores drawn with ties.
std::vector<ImageResult> make_results(const test::ScratchDir& dir, int n) {
  std::mt19937 rng(5);
  std::vector<ImageResult> results;
  for (int i = 0; i < n; ++i) {
    ImageResult r;
    r.path = dir.file("img" + std::to_string(i) + ".png");
    cv::Mat image(48, 64, CV_8UC1);
    cv::randu(image, 0, 255);
    write_png(r.path, image);
    r.label = i % 2;
    r.score = static_cast<double>(rng() % 10) / 10.0;  // ties on purpose
    r.map = torch::rand({48, 64});
    r.mask = torch::zeros({48, 64});
    if (r.label) r.mask.slice(0, 10, 20).slice(1, 10, 30).fill_(1);
    results.push_back(r);
  }
  ImageResult broken;
  broken.path = dir.file("broken.png");
  broken.label = 1;
  broken.error = broken.path + ": cannot decode the image";
  results.push_back(broken);
  return results;
}

}  // namespace

TEST(Report, CurvesAgreeWithTheExactMetrics) {
  std::mt19937 rng(11);
  std::vector<double> scores;
  std::vector<int> labels;
  for (int i = 0; i < 300; ++i) {
    labels.push_back(static_cast<int>(rng() % 3 == 0));
    scores.push_back(static_cast<double>(rng() % 50) / 50.0 + 0.3 * labels.back());
  }
  const auto s = torch::tensor(scores, torch::kFloat64), l = torch::tensor(labels);
  const auto roc = roc_points(scores, labels);
  EXPECT_EQ(roc.front(), (std::pair<double, double>{0, 0}));
  EXPECT_NEAR(roc.back().first, 1, 1e-12);
  EXPECT_NEAR(roc.back().second, 1, 1e-12);
  EXPECT_NEAR(trapezoid(roc), metric_auroc(s, l), 1e-9);
  // AP is the step sum over the PR points: sum (R_k - R_{k-1}) P_k.
  const auto pr = pr_points(scores, labels);
  double ap = 0, previous = 0;
  for (const auto& [recall, precision] : pr) ap += (recall - previous) * precision, previous = recall;
  EXPECT_NEAR(ap, metric_average_precision(s, l), 1e-9);
}

TEST(Report, PageHasOneCardPerImageAndNoExternalReference) {
  test::ScratchDir dir;
  const auto results = make_results(dir, 12);
  model::Calibration calibration;
  calibration.image_threshold = 0.45;
  calibration.pixel_threshold = 0.5;
  calibration.calibrated = true;
  const nlohmann::json metrics = {{"image", {{"auroc", 0.75}}}, {"pixel", {{"auroc", 0.5}}}};
  write_html_report(dir.file("report"), "test <report>", results, metrics, calibration);
  const std::string html = read_file_text(dir.file("report/index.html"));
  EXPECT_EQ(count(html, "<figure class=\"card"), results.size());
  size_t wrong = 0;  // brute force: false positives and negatives at the threshold
  for (const auto& r : results)
    if (r.error.empty()) wrong += (r.score >= 0.45) != (r.label == 1);
  EXPECT_EQ(count(html, "<figure class=\"card fp") + count(html, "<figure class=\"card fn"), wrong);
  EXPECT_EQ(count(html, "<svg"), 3u);
  EXPECT_EQ(count(html, "data:image/png;base64,"), 3u * 12);  // image, truth, overlay per readable image
  EXPECT_NE(html.find("test &lt;report&gt;"), std::string::npos);  // escaped
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((src|href)\s*=\s*"(https?:|//))")));
  EXPECT_EQ(html.find("<link"), std::string::npos);
  // Sorted by score, highest first.
  std::vector<double> shown;
  const std::regex score_re(R"(data-score="([0-9.]+)\")");
  for (std::sregex_iterator it(html.begin(), html.end(), score_re), end; it != end; ++it)
    shown.push_back(std::stod((*it)[1].str()));
  ASSERT_EQ(shown.size(), results.size());
  EXPECT_TRUE(std::is_sorted(shown.begin(), shown.end() - 1, std::greater<double>()));
}

TEST(Report, RendersInHeadlessChromium) {
  const std::string chromium = "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << "chromium is missing: run scripts/setup.sh (make setup)";
  test::ScratchDir dir;
  const auto results = make_results(dir, 8);
  model::Calibration calibration;
  calibration.image_threshold = 0.5;
  calibration.pixel_threshold = 0.5;
  write_html_report(dir.file("report"), "chromium", results, {{"image", {{"auroc", 0.5}}}}, calibration);
  const std::string url = "file://" + dir.file("report/index.html");
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
                            "--user-data-dir=" + test::quote(dir.file("profile")) + " ";
  // The DOM after the page's script ran: one card per image counted by the browser itself.
  const std::string dom = test::run_shell(chromium + flags + "--dump-dom " + test::quote(url) + " 2>/dev/null");
  EXPECT_NE(dom.find("data-cards=\"" + std::to_string(results.size()) + "\""), std::string::npos) << dom.substr(0, 300);
  // A screenshot, kept as an artefact of the build.
  const fs::path artifacts = fs::path(MEDSAD_BINARY).parent_path() / "artifacts";
  fs::create_directories(artifacts);
  const std::string shot = (artifacts / "report.png").string();
  fs::remove(shot);
  test::run_shell(chromium + flags + "--window-size=1280,1400 --screenshot=" + test::quote(shot) + " " + test::quote(url) +
      " >/dev/null 2>&1");
  const cv::Mat picture = cv::imread(shot);
  ASSERT_FALSE(picture.empty()) << shot;
  cv::Scalar mean, stddev;
  cv::meanStdDev(picture, mean, stddev);
  EXPECT_GT(stddev[0], 10.0);  // not a blank page
}
