#include <random>

#include "core/error.h"
#include "data/jpeg2000.h"
#include "jpeg2000_encoder.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::data;

namespace {

std::vector<int32_t> random_samples(size_t n, int32_t lo, int32_t hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> value(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = value(rng);
  return v;
}

}  // namespace

TEST(Jpeg2000, LosslessCodestreamsDecodeToTheirSamples) {
  // Signed 16-bit (CT), unsigned 12-bit (MR) and 8-bit RGB with the reversible colour transform,
  // at sizes that are not powers of two: every sample must come back exactly.
  struct Case {
    int width, height, components, precision;
    bool is_signed;
    int32_t lo, hi;
  };
  for (const Case& c : {Case{37, 29, 1, 16, true, -32768, 32767}, Case{64, 48, 1, 12, false, 0, 4095},
                        Case{23, 31, 3, 8, false, 0, 255}}) {
    const auto samples = random_samples(static_cast<size_t>(c.width) * c.height * c.components, c.lo, c.hi, 7);
    const std::string codestream =
        test::encode_jpeg2000_lossless(samples, c.width, c.height, c.components, c.precision, c.is_signed);
    ASSERT_FALSE(codestream.empty());
    const auto image = decode_jpeg2000(codestream, "case");
    EXPECT_EQ(image.width, c.width);
    EXPECT_EQ(image.height, c.height);
    EXPECT_EQ(image.components, c.components);
    EXPECT_EQ(image.precision, c.precision);
    EXPECT_EQ(image.is_signed, c.is_signed);
    EXPECT_EQ(image.samples, samples) << c.components << " components, " << c.precision << " bits";
  }
}

TEST(Jpeg2000, CutOrForeignBytesAreErrorsNamingTheirSource) {
  const auto samples = random_samples(40 * 40, -1000, 1000, 3);
  const std::string codestream = test::encode_jpeg2000_lossless(samples, 40, 40, 1, 16, true);
  ASSERT_FALSE(codestream.empty());
  for (const std::string& bad : {codestream.substr(0, codestream.size() / 2), codestream.substr(0, 40),
                                 std::string("not a codestream"), std::string()}) {
    try {
      (void)decode_jpeg2000(bad, "frame.j2k");
      ADD_FAILURE() << "decoded " << bad.size() << " bad bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), "frame.j2k");
      EXPECT_NE(e.problem().find("JPEG 2000"), std::string::npos) << e.what();
    }
  }
}
