#include <array>
#include <functional>
#include <fstream>
#include <iostream>
#include <optional>

#include <opencv2/imgcodecs.hpp>
#include <zlib.h>

#include "core/error.h"
#include "core/file_io.h"
#include "data/image_io.h"
#include "test_support.h"

using namespace medsad;

namespace {

// A W x H image whose pixel (y, x) channel c holds (x + 3y + 7c) mod 256, scaled to the depth.
cv::Mat pattern(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  const int channels = m.channels();
  const double scale = CV_MAT_DEPTH(type) == CV_16U ? 257.0 : 1.0;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      for (int c = 0; c < channels; ++c) {
        const double v = ((x + 3 * y + 7 * c) % 256) * scale;
        if (CV_MAT_DEPTH(type) == CV_16U) m.ptr<uint16_t>(y)[x * channels + c] = static_cast<uint16_t>(v);
        else m.ptr<uint8_t>(y)[x * channels + c] = static_cast<uint8_t>(v);
      }
  return m;
}

float expected(int y, int x, int c) { return ((x + 3 * y + 7 * c) % 256) / 255.0f; }

}  // namespace

TEST(ImageIo, GreyEightBitIsReplicatedToThreeChannels) {
  test::ScratchDir dir;
  cv::imwrite(dir.file("g.png"), pattern(9, 12, CV_8UC1));
  const auto img = read_image_rgb(dir.file("g.png"));
  ASSERT_EQ(img.sizes(), torch::IntArrayRef({3, 9, 12}));
  EXPECT_FLOAT_EQ(img[0][4][8].item<float>(), expected(4, 8, 0));
  EXPECT_TRUE(torch::equal(img[0], img[2]));
}

TEST(ImageIo, SixteenBitGreyUsesTheFullRange) {
  test::ScratchDir dir;
  cv::imwrite(dir.file("g16.png"), pattern(8, 10, CV_16UC1));
  const auto img = read_image_rgb(dir.file("g16.png"));
  EXPECT_NEAR(img[1][3][5].item<float>(), expected(3, 5, 0), 1e-6);
}

TEST(ImageIo, ColourIsRgbOrderAndAlphaIsDropped) {
  test::ScratchDir dir;
  // OpenCV stores BGR(A): channel 0 on disk is blue, so RGB channel 2 must equal pattern channel 0.
  cv::imwrite(dir.file("c.png"), pattern(8, 8, CV_8UC4));
  cv::imwrite(dir.file("c.tif"), pattern(8, 8, CV_16UC3));
  for (const char* name : {"c.png", "c.tif"}) {
    const auto img = read_image_rgb(dir.file(name));
    ASSERT_EQ(img.size(0), 3) << name;
    EXPECT_NEAR(img[2][2][3].item<float>(), expected(2, 3, 0), 1e-6) << name;
    EXPECT_NEAR(img[0][2][3].item<float>(), expected(2, 3, 2), 1e-6) << name;
  }
}

TEST(ImageIo, SignedAndFloatTiffsMapTheirOwnRangeToUnit) {
  // A CT slice in Hounsfield units (signed 16 bit, and the same as float) spans its own min..max;
  // a float image already in [0, 1] is kept as stored; RGBA float drops alpha before the range.
  test::ScratchDir dir;
  constexpr int rows = 8, cols = 10;
  cv::Mat hu(rows, cols, CV_16SC1);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) hu.at<int16_t>(y, x) = static_cast<int16_t>(-1000 + 150 * (cols * y + x));
  cv::Mat hu_float;
  hu.convertTo(hu_float, CV_32F);
  ASSERT_TRUE(cv::imwrite(dir.file("hu16.tif"), hu));
  ASSERT_TRUE(cv::imwrite(dir.file("hu32.tif"), hu_float));
  for (const char* name : {"hu16.tif", "hu32.tif"}) {
    const auto img = read_image_rgb(dir.file(name));
    ASSERT_EQ(img.sizes(), torch::IntArrayRef({3, rows, cols})) << name;
    EXPECT_NEAR(img[0][0][0].item<float>(), 0.0f, 1e-6) << name;
    EXPECT_NEAR(img[1][rows - 1][cols - 1].item<float>(), 1.0f, 1e-6) << name;
    EXPECT_NEAR(img[2][1][2].item<float>(), (cols + 2.0) / (rows * cols - 1.0), 1e-6) << name;
  }
  cv::Mat unit(8, 8, CV_32FC4, cv::Scalar(0.25, 0.5, 0.75, 40.0));  // BGRA; alpha outside [0, 1]
  ASSERT_TRUE(cv::imwrite(dir.file("unit.tif"), unit));
  const auto img = read_image_rgb(dir.file("unit.tif"));
  EXPECT_FLOAT_EQ(img[0][1][1].item<float>(), 0.75f);  // red: OpenCV's third channel
  EXPECT_FLOAT_EQ(img[2][1][1].item<float>(), 0.25f);
  cv::Mat flat(8, 8, CV_32FC1, cv::Scalar(300.0));
  ASSERT_TRUE(cv::imwrite(dir.file("flat.tif"), flat));
  EXPECT_EQ(read_image_rgb(dir.file("flat.tif")).abs().max().item<float>(), 0.0f);
}

TEST(ImageIo, NonFinitePixelsAreRefused) {
  test::ScratchDir dir;
  cv::Mat image(8, 8, CV_32FC1, cv::Scalar(0.5));
  image.at<float>(2, 1) = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(cv::imwrite(dir.file("nan.tif"), image));
  image.at<float>(2, 1) = std::numeric_limits<float>::infinity();
  ASSERT_TRUE(cv::imwrite(dir.file("inf.tif"), image));
  for (const char* name : {"nan.tif", "inf.tif"}) {
    try {
      (void)read_image_rgb(dir.file(name));
      ADD_FAILURE() << name << " was decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), dir.file(name));
      EXPECT_EQ(e.problem(), "holds NaN or infinite pixel values");
    }
  }
}

TEST(ImageIo, ImagesTooSmallToScoreAreRefused) {
  test::ScratchDir dir;
  for (const auto& [rows, cols] : {std::pair{1, 1}, std::pair{3, 2}, std::pair{1, 5000}, std::pair{7, 64}}) {
    const std::string path = dir.file("small_" + std::to_string(rows) + "x" + std::to_string(cols) + ".png");
    ASSERT_TRUE(cv::imwrite(path, cv::Mat(rows, cols, CV_8UC1, cv::Scalar(90))));
    try {
      (void)read_image_rgb(path);
      ADD_FAILURE() << path << " was decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_EQ(e.problem(), "is " + std::to_string(cols) + "x" + std::to_string(rows) +
                                 " pixels: too small to score (at least 8 a side)");
    }
  }
  const std::string smallest = dir.file("smallest.png");
  ASSERT_TRUE(cv::imwrite(smallest, cv::Mat(8, 8, CV_8UC1, cv::Scalar(90))));
  EXPECT_EQ(read_image_rgb(smallest).sizes(), torch::IntArrayRef({3, 8, 8}));
}

TEST(ImageIo, JpegDecodes) {
  test::ScratchDir dir;
  cv::Mat flat(8, 8, CV_8UC3, cv::Scalar(40, 120, 200));
  cv::imwrite(dir.file("f.jpg"), flat);
  const auto img = read_image_rgb(dir.file("f.jpg"));
  EXPECT_NEAR(img[0].mean().item<float>(), 200 / 255.0, 0.02);  // red came from OpenCV's third channel
}

TEST(ImageIo, CorruptAndMissingFilesNameThePath) {
  test::ScratchDir dir;
  std::ofstream(dir.file("bad.png")) << "\x89PNG garbage";
  try {
    read_image_rgb(dir.file("bad.png"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), dir.file("bad.png"));
  }
  EXPECT_THROW(read_image_rgb(dir.file("none.png")), Error);
  EXPECT_THROW(read_image_rgb(dir.path().string()), Error);
  // A header (with a valid checksum) giving no width: our line, not libpng's.
  ASSERT_TRUE(cv::imwrite(dir.file("ok.png"), cv::Mat(9, 9, CV_8UC1, cv::Scalar(3))));
  auto bytes = read_file_bytes(dir.file("ok.png"));
  std::fill(bytes.begin() + 16, bytes.begin() + 20, 0);  // IHDR width
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()) + 12, 17);
  for (int i = 0; i < 4; ++i) bytes[29 + static_cast<size_t>(i)] = static_cast<char>((crc >> (24 - 8 * i)) & 0xFF);
  write_file_atomic(dir.file("no_width.png"), bytes.data(), bytes.size());
  try {
    (void)read_image_rgb(dir.file("no_width.png"));
    ADD_FAILURE() << "a PNG of width 0 was decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), "corrupt PNG: its header gives a 0x9 image (1 to 1000000 pixels a side)");
  }
}

TEST(ImageIo, TruncatedPngAndJpegAreRefusedWholeOnesDecode) {
  // libjpeg would decode a cut-off JPEG with its missing part grey and only a warning; each cut
  // here must be refused, naming the file, while the whole file (and one with bytes after the
  // JPEG's end marker, which some writers append) still decodes.
  test::ScratchDir dir;
  const cv::Mat image = pattern(48, 40, CV_8UC3);
  const std::vector<std::pair<std::string, std::vector<int>>> formats = {
      {".png", {}}, {".jpg", {}}, {".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}}};
  for (const auto& [extension, params] : formats) {
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(extension, image, bytes, params));
    const std::string whole(bytes.begin(), bytes.end());
    const std::string path = dir.file("whole" + extension);
    std::ofstream(path, std::ios::binary) << whole;
    EXPECT_EQ(read_image_rgb(path).size(2), 40) << extension;
    EXPECT_EQ(decode_image_frames_rgb(whole, "upload").front().size(1), 48) << extension;
    if (extension == ".jpg") {
      std::ofstream(path, std::ios::binary) << whole << "trailing bytes";
      EXPECT_EQ(read_image_rgb(path).size(2), 40) << "a JPEG with bytes after its end marker";
    }
    for (const double share : {0.3, 0.6, 0.9}) {
      for (const size_t cut : {static_cast<size_t>(share * static_cast<double>(whole.size())), whole.size() - 1}) {
        const std::string cut_path = dir.file("cut" + extension);
        std::ofstream(cut_path, std::ios::binary) << whole.substr(0, cut);
        try {
          (void)read_image_rgb(cut_path);
          ADD_FAILURE() << extension << " cut to " << cut << " of " << whole.size() << " bytes was decoded";
        } catch (const Error& e) {
          EXPECT_EQ(e.path(), cut_path);
          // Found by the end-marker check, not left to the decoder's generic failure.
          const std::string format = extension == ".png" ? "PNG" : "JPEG";
          EXPECT_EQ(e.problem().rfind("truncated " + format + ": ", 0), 0u) << e.what();
        }
        EXPECT_THROW((void)decode_image_frames_rgb(whole.substr(0, cut), "upload"), Error) << extension << " " << cut;
      }
    }
  }
}

TEST(ImageIo, DamagedPngIsRefusedByItsChecksum) {
  // Bytes flipped inside the image data: libpng would fail part-way with its own stderr line, or
  // not at all where the flip lands in a filter-free stretch. The chunk's CRC-32 catches it.
  std::vector<uchar> bytes;
  ASSERT_TRUE(cv::imencode(".png", pattern(48, 40, CV_8UC3), bytes));
  std::string damaged(bytes.begin(), bytes.end());
  const size_t idat = damaged.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  damaged[idat + 20] = static_cast<char>(damaged[idat + 20] ^ 0x5a);
  try {
    (void)decode_image_frames_rgb(damaged, "upload.png");
    ADD_FAILURE() << "a PNG with a damaged IDAT chunk was decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), "corrupt PNG: the IDAT chunk at byte " + std::to_string(idat - 4) + " fails its checksum");
  }
}

TEST(ImageIo, CutBmpTiffAndPnmFailWithOnlyOurMessage) {
  // OpenCV prints such a decoder failure to std::cerr itself; the one line that says which file
  // failed is ours, so nothing else may reach stderr.
  test::ScratchDir dir;
  for (const std::string extension : {".bmp", ".tiff", ".ppm"}) {
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(extension, pattern(48, 40, CV_8UC3), bytes));
    const std::string whole(bytes.begin(), bytes.end());
    const std::string path = dir.file("cut" + extension);
    std::ofstream(path, std::ios::binary) << whole.substr(0, whole.size() * 6 / 10);
    testing::internal::CaptureStderr();
    EXPECT_THROW((void)read_image_rgb(path), Error) << extension;
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << extension;
    testing::internal::CaptureStderr();
    std::cerr << "after" << std::flush;  // std::cerr is back once the decoder is done
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "after") << extension;
  }
}

namespace {

std::string big_endian_bytes(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                     static_cast<char>(v)};
}

// One PNG chunk: its data's length (big-endian), type, data and the CRC-32 of type and data.
std::string png_chunk(const std::string& type, const std::string& data) {
  const std::string body = type + data;
  const uLong crc =
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  return big_endian_bytes(static_cast<uint32_t>(data.size())) + body + big_endian_bytes(static_cast<uint32_t>(crc));
}

std::string zlib_compressed(const std::string& raw) {
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(size, '\0');
  compress(reinterpret_cast<Bytef*>(packed.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
           static_cast<uLong>(raw.size()));
  packed.resize(size);
  return packed;
}

// A PNG written byte by byte: 8-bit grey W x H, pixel (y, x) = (x + 3y) mod 256 as in pattern(),
// Adam7-interlaced if asked; `ihdr_depth` / `ihdr_colour` go into the header as given, and
// `idat` (when not empty) replaces the compressed rows. Every chunk carries a valid CRC-32.
std::string handmade_png(uint32_t width, uint32_t height, bool interlaced, int ihdr_depth = 8, int ihdr_colour = 0,
                         std::optional<std::string> idat = std::nullopt, bool with_idat = true) {
  if (!idat) {
    std::string raw;  // filter byte 0 and the pixels of each row of each pass
    // Each pass: first column, first row, column step, row step.
    const std::vector<std::array<int, 4>> adam7 = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                                   {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    for (const auto& p : interlaced ? adam7 : std::vector<std::array<int, 4>>{{0, 0, 1, 1}}) {
      if (static_cast<uint32_t>(p[0]) >= width) continue;  // a pass with no columns has no rows either
      for (uint32_t y = static_cast<uint32_t>(p[1]); y < height; y += static_cast<uint32_t>(p[3])) {
        raw += '\0';
        for (uint32_t x = static_cast<uint32_t>(p[0]); x < width; x += static_cast<uint32_t>(p[2]))
          raw += static_cast<char>((x + 3 * y) % 256);
      }
    }
    idat = zlib_compressed(raw);
  }
  const std::string header = big_endian_bytes(width) + big_endian_bytes(height) + static_cast<char>(ihdr_depth) +
                             static_cast<char>(ihdr_colour) + std::string(2, '\0') + static_cast<char>(interlaced);
  return "\x89PNG\r\n\x1a\n" + png_chunk("IHDR", header) + (with_idat ? png_chunk("IDAT", *idat) : "") +
         png_chunk("IEND", "");
}

}  // namespace

TEST(ImageIo, PngThatLibpngCannotReadIsRefusedInOneLineOfOurs) {
  // Chunks whole and checksummed, yet unreadable: libpng would print its own "libpng error: ..."
  // line before OpenCV gave up. Sound PNGs, interlaced ones included, still decode pixel for pixel.
  for (const bool interlaced : {false, true}) {
    const auto image = decode_image_frames_rgb(handmade_png(37, 29, interlaced), "sound.png").front();
    ASSERT_EQ(image.sizes(), torch::IntArrayRef({3, 29, 37})) << interlaced;
    for (const auto& [y, x] : {std::pair{0, 0}, {28, 36}, {13, 5}, {7, 30}})
      EXPECT_FLOAT_EQ(image[1][y][x].item<float>(), expected(y, x, 0)) << interlaced << " " << y << "," << x;
  }
  // Zeros for the first half of the rows only (filter 0, black), validly compressed.
  const std::string rows_missing = zlib_compressed(std::string(14 * 38, '\0'));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {handmade_png(37, 29, false, 8, 0, rows_missing), "corrupt PNG: Not enough image data"},
      {handmade_png(37, 29, true, 8, 0, rows_missing), "corrupt PNG: Not enough image data"},
      {handmade_png(37, 29, false, 8, 0, std::string("not zlib data at all")),
       "corrupt PNG: IDAT: incorrect header check"},
      {handmade_png(37, 29, false, 8, 0, std::nullopt, false), "corrupt PNG: IEND: out of place"},
      {handmade_png(37, 29, false, 3, 2), "corrupt PNG: Invalid IHDR data"},  // RGB at 3 bits: no such PNG
  };
  for (const auto& [bytes, problem] : cases) {
    testing::internal::CaptureStderr();
    try {
      (void)decode_image_frames_rgb(bytes, "bad.png");
      ADD_FAILURE() << problem << ": decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), "bad.png");
      EXPECT_EQ(e.problem(), problem);
    }
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << problem;
  }
}

TEST(ImageIo, PngOverTheDecodersPixelLimitIsRefusedBeforeDecoding) {
  // 40000 x 40000 is within libpng's million a side but over OpenCV's 2^30 pixels; the rows
  // given are far too few, yet the size is what the line must name.
  const auto bytes = handmade_png(40000, 40000, false, 8, 0, std::string("x"));
  try {
    (void)decode_image_frames_rgb(bytes, "huge.png");
    ADD_FAILURE() << "decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(),
              "PNG too large: its header gives a 40000x40000 image, over the 2^30 pixels an image may have");
  }
}

namespace {

// A non-interlaced PNG of any colour type and bit depth, byte by byte: sample(x, y, c) gives each
// stored sample (a palette index for colour type 3), packed most significant bit first below 8
// bits and big-endian at 16; `chunks` (type and data) go between IHDR and IDAT.
std::string png_of(uint32_t width, uint32_t height, int depth, int colour,
                   const std::function<uint32_t(uint32_t, uint32_t, int)>& sample,
                   const std::vector<std::pair<std::string, std::string>>& chunks = {}) {
  const int channels = colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4;
  std::string raw;
  for (uint32_t y = 0; y < height; ++y) {
    raw += '\0';
    std::string row;
    uint32_t bits = 0, filled = 0;
    for (uint32_t x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c) {
        const uint32_t v = sample(x, y, c) & ((1u << depth) - 1);
        if (depth == 16) {
          row += static_cast<char>(v >> 8);
          row += static_cast<char>(v & 0xFF);
        } else {
          bits = (bits << depth) | v;
          filled += static_cast<uint32_t>(depth);
          if (filled == 8) row += static_cast<char>(bits), bits = 0, filled = 0;
        }
      }
    if (filled > 0) row += static_cast<char>(bits << (8 - filled));
    raw += row;
  }
  // handmade_png's signature, header and IDAT, with the extra chunks after IHDR.
  std::string png = handmade_png(width, height, false, depth, colour, zlib_compressed(raw));
  const size_t after_ihdr = 8 + 12 + 13;
  std::string extra;
  for (const auto& [type, data] : chunks) extra += png_chunk(type, data);
  return png.insert(after_ihdr, extra);
}

}  // namespace

TEST(ImageIo, EveryKindOfPngDecodesAsOpenCvDecodesIt) {
  // medsad decodes PNGs with libpng itself (silent handlers); OpenCV's decoder is the reference,
  // compared after image_to_rgb (alpha dropped, values to [0, 1]) for every colour type and depth.
  const auto mix = [](uint32_t x, uint32_t y, int c) {
    return x * 7 + y * 13 + static_cast<uint32_t>(c) * 101 + x * y;
  };
  std::string palette, palette_alpha;
  for (int i = 0; i < 256; ++i) {
    palette += {static_cast<char>(i * 37), static_cast<char>(i * 91), static_cast<char>(i * 13)};
    palette_alpha += static_cast<char>(255 - i);
  }
  const std::string grey_key = std::string("\0\5", 2), rgb_key = std::string("\0\1\0\2\0\3", 6);
  std::vector<std::pair<std::string, std::string>> cases;  // name, bytes
  for (const int depth : {1, 2, 4, 8, 16})
    cases.push_back({"grey " + std::to_string(depth), png_of(21, 17, depth, 0, mix)});
  for (const int depth : {1, 2, 4, 8})
    cases.push_back({"palette " + std::to_string(depth),
                     png_of(21, 17, depth, 3, mix, {{"PLTE", palette.substr(0, 3u << depth)}})});
  cases.push_back({"palette with transparency",
                   png_of(21, 17, 8, 3, mix, {{"PLTE", palette}, {"tRNS", palette_alpha}})});
  cases.push_back({"grey with a transparent key", png_of(21, 17, 8, 0, mix, {{"tRNS", grey_key}})});
  cases.push_back({"RGB with a transparent key", png_of(21, 17, 8, 2, mix, {{"tRNS", rgb_key}})});
  for (const int depth : {8, 16}) {
    cases.push_back({"grey+alpha " + std::to_string(depth), png_of(21, 17, depth, 4, mix)});
    cases.push_back({"RGB " + std::to_string(depth), png_of(21, 17, depth, 2, mix)});
    cases.push_back({"RGBA " + std::to_string(depth), png_of(21, 17, depth, 6, mix)});
  }
  cases.push_back({"interlaced grey", handmade_png(37, 29, true)});
  for (const auto& [name, bytes] : cases) {
    const cv::Mat reference = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U,
                                                   const_cast<char*>(bytes.data())), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(reference.empty()) << name;
    testing::internal::CaptureStderr();
    const auto ours = decode_image_frames_rgb(bytes, "kind.png").front();
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << name;
    const auto expected = image_to_rgb(reference, "reference");
    ASSERT_EQ(ours.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(torch::equal(ours, expected)) << name;
  }
}

TEST(ImageIo, PngThatLibpngOnlyWarnsAboutDecodesWithoutAWord) {
  // A damaged ancillary chunk (its checksum off) and an out-of-range gamma: libpng drops them with
  // a warning, which OpenCV's decoder would print; the pixels are sound and decode silently.
  const auto grey = [](uint32_t x, uint32_t y, int) { return x + 3 * y; };
  std::string text = png_of(16, 12, 8, 0, grey, {{"tEXt", std::string("Comment\0hello", 13)}});
  const size_t text_at = text.find("tEXt");
  text[text_at + 4 + 13] = static_cast<char>(text[text_at + 4 + 13] ^ 1);  // first byte of its CRC
  const std::string gamma = png_of(16, 12, 8, 0, grey, {{"gAMA", std::string(4, '\0')}});
  for (const auto& bytes : {text, gamma}) {
    testing::internal::CaptureStderr();
    const auto image = decode_image_frames_rgb(bytes, "warned.png").front();
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
    EXPECT_FLOAT_EQ(image[0][5][7].item<float>(), expected(5, 7, 0));
  }
}
