#include "data/synth_lesions.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/random.h"
#include "data/noise_field.h"

namespace medsad::data {
namespace {

// Soft lesion edges stop at this weight: a masked pixel changes by at least this share of the
// lesion's contrast (about 5 grey levels at medium contrast), an unmasked one not at all.
constexpr float kMinVisibleWeight = 0.3f;

// A lobulated ellipse roughened by smooth noise.
struct Outline {
  cv::Point centre;
  double radius = 1;     // mean radius, pixels
  double aspect = 1;     // ratio of the first axis to the second
  double angle = 0;      // of the first axis, radians
  double lobes = 0;      // largest amplitude of each of the 2nd-4th angular harmonics of the radius
  double roughness = 0;  // weight of the unit-sd noise added to the level
  double cell = 1;       // noise correlation length, pixels
};

// CV_32F level field of `o`: rho / r(theta) + roughness * noise, where rho is the elliptical
// distance in radii and r(theta) the lobulated radius. The outline is the level-1 contour;
// larger levels give larger, rougher shells around it (oedema).
cv::Mat outline_level(cv::Size size, const Outline& o, std::mt19937_64& rng) {
  // amplitude * e^(i phase) of the 2nd, 3rd and 4th harmonics. Every draw here and below is its
  // own statement: the order of evaluation of function arguments is unspecified, and the same
  // seed must give the same lesion with every compiler.
  std::complex<double> harmonic[3];
  for (auto& h : harmonic) {
    const double amplitude = draw_uniform(rng, 0.0, o.lobes);
    h = std::polar(amplitude, draw_uniform(rng, 0.0, 2 * M_PI));
  }
  const cv::Mat noise = smooth_noise(size.height, size.width, o.cell, rng);
  const double c = std::cos(o.angle), s = std::sin(o.angle);
  const double a = o.radius * std::sqrt(o.aspect), b = o.radius / std::sqrt(o.aspect);  // semi-axes
  cv::Mat level(size, CV_32F);
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x) {
      const double dx = x - o.centre.x, dy = y - o.centre.y;
      const double u = (dx * c + dy * s) / a, v = (-dx * s + dy * c) / b;
      const double rho = std::sqrt(u * u + v * v);
      // cos(k theta + phase) = Re(e^(i k theta) e^(i phase)), with e^(i theta) = (u + i v) / rho:
      // powers instead of trigonometry, the hot loop of lesion making.
      double r = 1.0;
      if (rho > 0) {
        const std::complex<double> turn(u / rho, v / rho);
        std::complex<double> power = turn * turn;
        for (const auto& h : harmonic) {
          r += (power * h).real();
          power *= turn;
        }
      }
      level.at<float>(y, x) = static_cast<float>(rho / r + o.roughness * noise.at<float>(y, x));
    }
  return level;
}

// Weight of the lesion part {level < threshold} ∩ brain, CV_32F: 1 deep inside, falling toward
// the edge over `soft` level units but never below kMinVisibleWeight (soft 0: a sharp edge),
// 0 elsewhere. Only the piece connected to `centre` counts: the noise can raise islands away
// from the lesion, and each lesion here is one piece.
cv::Mat lesion_weight(const cv::Mat& level, double threshold, double soft, const cv::Mat& brain, cv::Point centre) {
  const cv::Mat inside = (level < threshold) & brain;  // CV_8U 0/255
  cv::Mat labels;
  cv::connectedComponents(inside, labels, 8, CV_32S);
  const int piece = labels.at<int>(centre);
  cv::Mat weight = cv::Mat::zeros(level.size(), CV_32F);
  if (piece == 0) return weight;  // the centre itself is outside: no such part
  for (int y = 0; y < level.rows; ++y)
    for (int x = 0; x < level.cols; ++x)
      if (labels.at<int>(y, x) == piece)
        weight.at<float>(y, x) =
            soft > 0
                ? std::clamp(static_cast<float>((threshold - level.at<float>(y, x)) / soft), kMinVisibleWeight, 1.0f)
                : 1.0f;
  return weight;
}

// image <- image + weight * (target - image): the lesion replaces the tissue where weight is 1.
void paint(cv::Mat& image, const cv::Mat& weight, const cv::Mat& target) {
  image += weight.mul(target - image);
}

// image <- image * (1 - weight * amount): the tissue keeps its structure, darker.
void darken(cv::Mat& image, const cv::Mat& weight, double amount) {
  image = image.mul(1.0 - weight * amount);
}

// The q-quantile (0..1) of the image over the brain.
float brain_quantile(const cv::Mat& image, const cv::Mat& brain, double q) {
  std::vector<float> values;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x)
      if (brain.at<uchar>(y, x)) values.push_back(image.at<float>(y, x));
  const auto at = values.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), at, values.end());
  return *at;
}

// A random brain pixel at least `min_depth` from the brain's edge (and inside `eligible` when it
// is given and has such pixels); the depth asked for shrinks to what a small brain offers.
cv::Point draw_centre(const cv::Mat& depth, double min_depth, const cv::Mat& eligible, std::mt19937_64& rng) {
  double deepest = 0;
  cv::minMaxLoc(depth, nullptr, &deepest);
  const float needed = static_cast<float>(std::min(min_depth, 0.7 * deepest));
  std::vector<cv::Point> deep, deep_eligible;
  for (int y = 0; y < depth.rows; ++y)
    for (int x = 0; x < depth.cols; ++x)
      if (depth.at<float>(y, x) >= needed) {
        deep.emplace_back(x, y);
        if (!eligible.empty() && eligible.at<uchar>(y, x)) deep_eligible.emplace_back(x, y);
      }
  const auto& pool = deep_eligible.empty() ? deep : deep_eligible;
  return pool[draw_below(rng, pool.size())];
}

// Mass effect: tissue moves away from `centre`, most (about 0.6 * strength * radius) at 1.5
// radii, fading to nothing at the brain's edge so the skull and the brain outline stay put.
// The radial source map rho * (1 - g) stays monotonic for strength <= 0.3: no tissue folds.
cv::Mat push_outward(const cv::Mat& image, const cv::Mat& depth, cv::Point centre, double radius, double strength) {
  const double sigma = 1.5 * radius;
  cv::Mat map_x(image.size(), CV_32F), map_y(image.size(), CV_32F);
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      const double dx = x - centre.x, dy = y - centre.y;
      const double g = strength * std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) *
                       std::min(1.0, depth.at<float>(y, x) / radius);
      map_x.at<float>(y, x) = static_cast<float>(x - dx * g);
      map_y.at<float>(y, x) = static_cast<float>(y - dy * g);
    }
  cv::Mat pushed;
  cv::remap(image, pushed, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  return pushed;
}

struct Context {
  const SliceImage& slice;
  const LesionDifficulty& difficulty;
  cv::Mat depth;     // CV_32F distance of each brain pixel to the nearest non-brain pixel
  double side;       // image side, pixels: lesion sizes scale with it
  float reference;   // median brain intensity: lesion contrasts scale with it
  std::mt19937_64& rng;

  double uniform(double lo, double hi) { return draw_uniform(rng, lo, hi); }
  double tumour_radius() { return uniform(difficulty.min_radius, difficulty.max_radius) * side; }
  double contrast() { return uniform(difficulty.min_contrast, difficulty.max_contrast); }
  // A radius that fits the brain: at most 0.8 of its deepest point, at least 2 pixels.
  double fitting(double radius) const {
    double deepest = 0;
    cv::minMaxLoc(depth, nullptr, &deepest);
    return std::clamp(radius, 2.0, std::max(2.0, 0.8 * deepest));
  }
  // A texture multiplier 1 + amount * noise with features of about `cell` pixels.
  cv::Mat texture(double amount, double cell) {
    return 1.0 + amount * smooth_noise(slice.image.rows, slice.image.cols, cell, rng);
  }
};

LesionedSlice add_tumour(Context& ctx) {
  const double radius = ctx.fitting(ctx.tumour_radius());
  const cv::Point centre = draw_centre(ctx.depth, 0.9 * radius, {}, ctx.rng);
  const double contrast = ctx.contrast();
  LesionedSlice out{push_outward(ctx.slice.image, ctx.depth, centre, radius, ctx.uniform(0.1, 0.3)), {}};
  const cv::Size size = ctx.slice.image.size();
  const cv::Mat& brain = ctx.slice.brain;

  Outline mass{centre, radius, ctx.uniform(0.7, 1.4), ctx.uniform(0, M_PI), 0.1, ctx.uniform(0.08, 0.2), 0.6 * radius};
  const cv::Mat mass_level = outline_level(size, mass, ctx.rng);
  Outline oedema = mass;  // same orientation, larger and more irregular (finger-like spread)
  oedema.lobes = 0.2;
  oedema.roughness = ctx.uniform(0.25, 0.45);
  oedema.cell = radius;
  const cv::Mat oedema_level = outline_level(size, oedema, ctx.rng);
  const cv::Mat oedema_weight = lesion_weight(oedema_level, ctx.uniform(1.3, 2.0), 0.3, brain, centre);
  darken(out.image, oedema_weight, ctx.uniform(0.4, 0.7) * contrast);  // T1: oedema mildly hypointense

  // The rim enhances (bright) in most tumours; the others are hypointense masses.
  const double rim_sign = ctx.uniform(0, 1) < 0.7 ? 1.0 : -0.8;
  const cv::Mat texture = ctx.texture(0.1, std::max(1.5, radius / 4));
  const cv::Mat mass_weight = lesion_weight(mass_level, 1.0, 0.15, brain, centre);
  paint(out.image, mass_weight, ctx.reference * (1 + rim_sign * contrast) * texture);
  if (ctx.uniform(0, 1) < 0.65) {  // necrotic core: fluid-like, darker than any tissue
    const cv::Mat core_weight = lesion_weight(mass_level, ctx.uniform(0.35, 0.7), 0.15, brain, centre);
    paint(out.image, core_weight, ctx.reference * std::max(0.15, 1 - 1.6 * contrast) * (0.5 + 0.5 * texture));
  }
  out.mask = (oedema_weight > 0) | (mass_weight > 0);
  return out;
}

LesionedSlice add_white_matter(Context& ctx) {
  LesionedSlice out{ctx.slice.image.clone(), cv::Mat::zeros(ctx.slice.image.size(), CV_8U)};
  // White matter is the brightest brain tissue on T1: blobs sit where the smoothed intensity is
  // in the brain's top 35%.
  cv::Mat smoothed;
  cv::GaussianBlur(ctx.slice.image, smoothed, cv::Size(0, 0), 1.0);
  const cv::Mat white = (smoothed >= brain_quantile(smoothed, ctx.slice.brain, 0.65)) & ctx.slice.brain;
  const double scale = ctx.tumour_radius();
  const auto count = 3 + static_cast<int>(draw_below(ctx.rng, 8));
  for (int i = 0; i < count; ++i) {
    const double radius = std::max(1.5, ctx.uniform(0.2, 0.4) * scale);
    const cv::Point centre = draw_centre(ctx.depth, radius + 1, white, ctx.rng);
    const Outline blob{centre, radius, ctx.uniform(0.5, 1.5), ctx.uniform(0, M_PI), 0.08, 0.1, std::max(1.5, radius)};
    const cv::Mat level = outline_level(out.image.size(), blob, ctx.rng);
    const cv::Mat weight = lesion_weight(level, 1.0, 0.35, ctx.slice.brain, centre);
    darken(out.image, weight, ctx.contrast());  // T1 "black holes"
    out.mask |= weight > 0;
  }
  return out;
}

LesionedSlice add_haemorrhage(Context& ctx) {
  const double share = ctx.uniform(0.5, 0.9);  // of a tumour radius
  const double radius = ctx.fitting(share * ctx.tumour_radius());
  const cv::Point centre = draw_centre(ctx.depth, 0.8 * radius, {}, ctx.rng);
  const double contrast = ctx.contrast();
  LesionedSlice out{ctx.slice.image.clone(), {}};
  const Outline blood{centre, radius, ctx.uniform(0.5, 1.6), ctx.uniform(0, M_PI), 0.15, ctx.uniform(0.15, 0.3),
                      0.5 * radius};
  const cv::Mat level = outline_level(out.image.size(), blood, ctx.rng);
  const cv::Mat weight = lesion_weight(level, 1.0, 0.0, ctx.slice.brain, centre);
  // Subacute blood (methaemoglobin) is bright on T1, acute blood dark.
  const bool bright = ctx.uniform(0, 1) < 0.7;
  paint(out.image, weight, ctx.reference * (1 + (bright ? 1.2 : -0.9) * contrast) * ctx.texture(0.06, 2.0));
  if (bright && ctx.uniform(0, 1) < 0.5) {  // dark haemosiderin rim, about 1.5 pixels thick
    const cv::Mat rim = (level >= 1.0 - 1.5 / radius) & (weight > 0);
    cv::Mat rim_weight;
    rim.convertTo(rim_weight, CV_32F, 1.0 / 255);
    paint(out.image, rim_weight, cv::Mat(out.image.size(), CV_32F, cv::Scalar(ctx.reference * (1 - contrast))));
  }
  out.mask = weight > 0;
  return out;
}

}  // namespace

const char* to_string(LesionKind kind) {
  switch (kind) {
    case LesionKind::Tumour: return "tumour";
    case LesionKind::WhiteMatter: return "white_matter";
    case LesionKind::Haemorrhage: return "haemorrhage";
  }
  return "?";
}

LesionDifficulty LesionDifficulty::easy() { return {0.08, 0.16, 0.35, 0.60}; }
LesionDifficulty LesionDifficulty::medium() { return {0.05, 0.13, 0.20, 0.45}; }
LesionDifficulty LesionDifficulty::hard() { return {0.03, 0.09, 0.10, 0.30}; }

LesionDifficulty LesionDifficulty::from_name(const std::string& name) {
  if (name == "easy") return easy();
  if (name == "medium") return medium();
  if (name == "hard") return hard();
  fail("", "unknown difficulty '" + name + "' (expected easy, medium or hard)");
}

void LesionDifficulty::validate() const {
  check_range("lesion min_radius", min_radius, 0.005, 0.3);
  check_range("lesion max_radius", max_radius, min_radius, 0.3);
  check_range("lesion min_contrast", min_contrast, 0.01, 1);
  check_range("lesion max_contrast", max_contrast, min_contrast, 1);
}

nlohmann::json LesionDifficulty::to_json() const {
  return {{"min_radius", min_radius}, {"max_radius", max_radius}, {"min_contrast", min_contrast},
          {"max_contrast", max_contrast}};
}

LesionedSlice add_lesion(const SliceImage& slice, LesionKind kind, const LesionDifficulty& difficulty,
                         std::mt19937_64& rng) {
  TORCH_CHECK(slice.image.type() == CV_32F && slice.brain.type() == CV_8U && slice.image.size() == slice.brain.size(),
              "add_lesion expects a CV_32F image and a CV_8U brain mask of the same size");
  cv::Mat depth;
  cv::distanceTransform(slice.brain, depth, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  double deepest = 0;
  cv::minMaxLoc(depth, nullptr, &deepest);
  TORCH_CHECK(deepest >= 2, "add_lesion needs a brain with a pixel 2 pixels from its edge");
  Context ctx{slice, difficulty, depth, static_cast<double>(std::max(slice.image.rows, slice.image.cols)),
              brain_quantile(slice.image, slice.brain, 0.5), rng};
  LesionedSlice out;
  switch (kind) {
    case LesionKind::Tumour: out = add_tumour(ctx); break;
    case LesionKind::WhiteMatter: out = add_white_matter(ctx); break;
    case LesionKind::Haemorrhage: out = add_haemorrhage(ctx); break;
  }
  cv::max(out.image, 0.0, out.image);
  cv::min(out.image, 1.0, out.image);
  return out;
}

}  // namespace medsad::data
