// NIfTI reading: files written by niftilib's own writer (NIfTI-1) or from its header conversion
// (NIfTI-2, byte-swapped files) with known voxels, scaling and orientation; the canonical RAS+
// voxels are checked against a brute-force expectation that ranks every voxel's world coordinate
// along each axis.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <type_traits>

#include <nifti2_io.h>
#include <zlib.h>

#include "core/error.h"
#include "core/file_io.h"
#include "data/nifti_volume.h"
#include "test_support.h"

namespace medsad::data {
namespace {

using test::ScratchDir;
using Affine = std::array<std::array<double, 4>, 3>;  // world (x, y, z) = A · (i, j, k, 1)

// The NIfTI versions these tests write: NIFTI_FTYPE_NIFTI1_1 and NIFTI_FTYPE_NIFTI2_1.
constexpr int kVersions[2] = {NIFTI_FTYPE_NIFTI1_1, NIFTI_FTYPE_NIFTI2_1};

// A single-file .nii (gzipped when `path` ends in .gz) of `image`'s header, as niftilib converts it
// to `Header` (nifti_1_header or nifti_2_header), and its voxels; with `swap`, every multi-byte
// field and voxel byte-swapped, as a machine of the other byte order writes it.
template <typename Header>
void write_single_file_by_hand(const std::string& path, const nifti_image& image, bool swap = false) {
  constexpr bool v2 = std::is_same_v<Header, nifti_2_header>;
  Header header;
  int converted;
  if constexpr (v2)
    converted = nifti_convert_nim2n2hdr(&image, &header);
  else
    converted = nifti_convert_nim2n1hdr(&image, &header);
  ASSERT_EQ(converted, 0);
  header.sizeof_hdr = sizeof(Header);
  header.vox_offset = sizeof(Header) + 4;
  std::memcpy(header.magic, v2 ? "n+2\0\r\n\032\n" : "n+1\0", v2 ? 8 : 4);
  if (swap) swap_nifti_header(&header, v2 ? 2 : 1);
  std::string bytes(sizeof(Header) + 4, '\0');
  std::memcpy(bytes.data(), &header, sizeof header);
  const size_t data_start = bytes.size();
  bytes.append(static_cast<const char*>(image.data), static_cast<size_t>(image.nvox) * image.nbyper);
  if (swap)
    for (size_t v = data_start; v < bytes.size(); v += image.nbyper)
      std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(v),
                   bytes.begin() + static_cast<std::ptrdiff_t>(v) + image.nbyper);
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  gzFile file = gzopen(path.c_str(), gz ? "wb" : "wbT");  // T: plain, uncompressed
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

// Writes `values` (file order, i fastest) as `datatype`, as NIfTI-1 through niftilib's own writer
// or as NIfTI-2 (`nifti_type`; niftilib 3.0 writes no single-file NIfTI-2) from niftilib's header
// conversion; `header` sets the scaling and orientation fields.
void write_with_niftilib(const std::string& path, int datatype, std::array<int, 3> size,
                         const std::vector<double>& values, const std::function<void(nifti_image&)>& header,
                         int nifti_type = NIFTI_FTYPE_NIFTI1_1) {
  const int64_t dims[8] = {3, size[0], size[1], size[2], 1, 1, 1, 1};
  nifti_image* image = nifti_make_new_nim(dims, datatype, 1);
  ASSERT_NE(image, nullptr);
  for (size_t v = 0; v < values.size(); ++v) {
    switch (datatype) {
      case DT_UINT8: static_cast<uint8_t*>(image->data)[v] = static_cast<uint8_t>(values[v]); break;
      case DT_INT16: static_cast<int16_t*>(image->data)[v] = static_cast<int16_t>(values[v]); break;
      case DT_FLOAT32: static_cast<float*>(image->data)[v] = static_cast<float>(values[v]); break;
      default: FAIL() << "datatype not used by these tests";
    }
  }
  header(*image);
  if (nifti_type == NIFTI_FTYPE_NIFTI2_1) {
    write_single_file_by_hand<nifti_2_header>(path, *image);
  } else {
    nifti_set_filenames(image, path.c_str(), 0, 1);
    nifti_image_write(image);
  }
  nifti_image_free(image);
}

// The sizeof_hdr field of an uncompressed .nii file: 348 for NIfTI-1, 540 for NIfTI-2.
int32_t header_size_field(const std::string& path) {
  const auto bytes = read_file_bytes(path);
  int32_t size = 0;
  if (bytes.size() >= sizeof size) std::memcpy(&size, bytes.data(), sizeof size);
  return size;
}

void set_pixdim(nifti_image& image, double dx, double dy, double dz) {
  image.dx = image.pixdim[1] = dx;
  image.dy = image.pixdim[2] = dy;
  image.dz = image.pixdim[3] = dz;
}

// Brute force: world coordinates of every file voxel; its canonical index along R, A and S is
// the rank of its x, y and z among all distinct values. Returns [S, A, R].
torch::Tensor expected_canonical(std::array<int, 3> size, const std::vector<double>& values, const Affine& affine) {
  std::vector<std::array<double, 3>> world;
  std::array<std::set<double>, 3> distinct;
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j)
      for (int i = 0; i < size[0]; ++i) {
        std::array<double, 3> w{};
        for (int r = 0; r < 3; ++r) {
          w[r] = affine[r][0] * i + affine[r][1] * j + affine[r][2] * k + affine[r][3];
          distinct[r].insert(w[r]);
        }
        world.push_back(w);
      }
  const auto rank = [&](int axis, double value) {
    return static_cast<int64_t>(std::distance(distinct[axis].begin(), distinct[axis].find(value)));
  };
  auto out = torch::full({static_cast<int64_t>(distinct[2].size()), static_cast<int64_t>(distinct[1].size()),
                          static_cast<int64_t>(distinct[0].size())},
                         std::nan(""), torch::kFloat64);
  auto a = out.accessor<double, 3>();
  for (size_t v = 0; v < values.size(); ++v)
    a[rank(2, world[v][2])][rank(1, world[v][1])][rank(0, world[v][0])] = values[v];
  return out;
}

std::vector<double> ramp(std::array<int, 3> size, double offset) {  // value = i + 10 j + 100 k + offset
  std::vector<double> values;
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j)
      for (int i = 0; i < size[0]; ++i) values.push_back(i + 10.0 * j + 100.0 * k + offset);
  return values;
}

void expect_one_line_error_naming(const std::function<void()>& read, const std::string& path,
                                  const std::string& words) {
  try {
    read();
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(e.problem().find(words), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

TEST(NiftiVolume, Int16WithScalingInLpsQformBecomesRasInEitherVersion) {
  ScratchDir dir;
  const std::array<int, 3> size{4, 3, 2};
  const auto stored = ramp(size, -60);
  std::vector<double> scaled;
  for (double v : stored) scaled.push_back(v * 0.5 + 3.0);
  const Affine lps = {{{-1.5, 0, 0, 10}, {0, -2, 0, 0}, {0, 0, 3, 0}}};
  for (const int version : kVersions) {
    SCOPED_TRACE(version);
    const std::string path = dir.file("lps" + std::to_string(version) + ".nii");
    write_with_niftilib(path, DT_INT16, size, stored, [](nifti_image& h) {
      set_pixdim(h, 1.5, 2.0, 3.0);
      h.scl_slope = 0.5;
      h.scl_inter = 3.0;
      h.qform_code = NIFTI_XFORM_SCANNER_ANAT;  // quaternion (b, c, d) = (0, 0, 1): 180 deg about z, so LPS
      h.quatern_b = 0.0;
      h.quatern_c = 0.0;
      h.quatern_d = 1.0;
      h.qfac = 1.0;
      h.qoffset_x = 10.0;
    }, version);
    ASSERT_EQ(header_size_field(path), version == NIFTI_FTYPE_NIFTI2_1 ? 540 : 348);

    const Volume volume = read_nifti_volume(path);
    EXPECT_TRUE(torch::equal(volume.voxels.to(torch::kFloat64), expected_canonical(size, scaled, lps)));
    EXPECT_EQ(volume.spacing_mm, (std::array<double, 3>{3.0, 2.0, 1.5}));
    // LPS: i runs toward the left, j toward posterior, so both in-plane axes are flipped.
    EXPECT_FLOAT_EQ(volume.voxels[0][0][0].item<float>(), static_cast<float>((3 + 10 * 2 - 60) * 0.5 + 3));
  }
}

TEST(NiftiVolume, SformPermutationWinsOverQformInEitherVersion) {
  ScratchDir dir;
  const std::array<int, 3> size{2, 3, 4};
  const auto values = ramp(size, 0.25);
  // i -> +z (S), j -> +x (R), k -> -y (toward posterior); the qform says plain RAS and must lose.
  const Affine permuted = {{{0, 2, 0, 5}, {0, 0, -3, 0}, {1.5, 0, 0, 0}}};
  for (const int version : kVersions) {
    SCOPED_TRACE(version);
    const std::string path = dir.file("permuted" + std::to_string(version) + ".nii.gz");
    write_with_niftilib(path, DT_FLOAT32, size, values, [&](nifti_image& h) {
      set_pixdim(h, 1.5, 2.0, 3.0);
      h.qform_code = NIFTI_XFORM_SCANNER_ANAT;
      h.quatern_b = h.quatern_c = h.quatern_d = 0.0;
      h.qfac = 1.0;
      h.sform_code = NIFTI_XFORM_ALIGNED_ANAT;
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) h.sto_xyz.m[r][c] = permuted[r][c];
    }, version);

    const Volume volume = read_nifti_volume(path);
    ASSERT_EQ(volume.voxels.sizes(), (std::vector<int64_t>{2, 4, 3}));  // [S <- i, A <- k, R <- j]
    EXPECT_TRUE(torch::equal(volume.voxels.to(torch::kFloat64), expected_canonical(size, values, permuted)));
    EXPECT_EQ(volume.spacing_mm, (std::array<double, 3>{1.5, 3.0, 2.0}));
  }
}

TEST(NiftiVolume, MaskWrittenLikeAPermutedSourceLiesOnItsVoxelGridInItsVersion) {
  ScratchDir dir;
  const std::array<int, 3> size{2, 3, 4};
  const auto values = ramp(size, 0.25);
  const Affine permuted = {{{0, 2, 0, 5}, {0, 0, -3, 0}, {1.5, 0, 0, 0}}};
  for (const int version : kVersions) {
    SCOPED_TRACE(version);
    const std::string source_path = dir.file("source" + std::to_string(version) + ".nii");
    const std::string mask_path = dir.file("mask" + std::to_string(version) + ".nii");
    write_with_niftilib(source_path, DT_FLOAT32, size, values, [&](nifti_image& h) {
      set_pixdim(h, 1.5, 2.0, 3.0);
      h.sform_code = NIFTI_XFORM_ALIGNED_ANAT;
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) h.sto_xyz.m[r][c] = permuted[r][c];
    }, version);
    const Volume source = read_nifti_volume(source_path);
    const double cut = 150;  // voxels above it are "lesion"
    write_nifti_mask_like(mask_path, source.voxels > cut, source);
    EXPECT_EQ(header_size_field(mask_path), header_size_field(source_path));  // the source's NIfTI version

    // In the file's own order, voxel v of the mask is values[v] > cut; the geometry is the source's.
    std::unique_ptr<nifti_image, void (*)(nifti_image*)> mask(nifti_image_read(mask_path.c_str(), 1),
                                                              nifti_image_free);
    ASSERT_TRUE(mask);
    EXPECT_EQ(mask->datatype, DT_UINT8);
    EXPECT_EQ(mask->nx, size[0]);
    EXPECT_EQ(mask->ny, size[1]);
    EXPECT_EQ(mask->nz, size[2]);
    EXPECT_EQ(mask->sform_code, NIFTI_XFORM_ALIGNED_ANAT);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) EXPECT_FLOAT_EQ(mask->sto_xyz.m[r][c], permuted[r][c]);
    EXPECT_FLOAT_EQ(mask->dx, 1.5);
    size_t lesion = 0;
    for (size_t v = 0; v < values.size(); ++v) {
      EXPECT_EQ(static_cast<uint8_t*>(mask->data)[v], values[v] > cut ? 1 : 0) << v;
      lesion += values[v] > cut;
    }
    EXPECT_GT(lesion, 0u);
    EXPECT_LT(lesion, values.size());
    // And read back, it overlays the source voxel for voxel.
    EXPECT_TRUE(torch::equal(read_nifti_volume(mask_path).voxels > 0.5, source.voxels > cut));
  }
}

TEST(NiftiVolume, AVolumeOfAFileOfSeveralIsPickedByItsIndex) {
  // 4 x 3 x 2 voxels, dims 4 and 5 of 2 and 3: six volumes, volume v holding ramp + 1000 v,
  // read through a permuted sform; its mask is a 3-D volume on the same grid.
  ScratchDir dir;
  const std::array<int, 3> size{4, 3, 2};
  const int64_t dims[8] = {5, size[0], size[1], size[2], 2, 3, 1, 1};
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> image(nifti_make_new_nim(dims, DT_FLOAT32, 1), nifti_image_free);
  ASSERT_TRUE(image);
  const auto one_volume = ramp(size, 0.5);
  for (size_t v = 0; v < 6; ++v)
    for (size_t i = 0; i < one_volume.size(); ++i)
      static_cast<float*>(image->data)[v * one_volume.size() + i] = static_cast<float>(one_volume[i] + 1000.0 * v);
  const Affine permuted = {{{0, 2, 0, 5}, {0, 0, -3, 0}, {1.5, 0, 0, 0}}};
  image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) image->sto_xyz.m[r][c] = permuted[r][c];
  const std::string path = dir.file("stack.nii.gz");
  nifti_set_filenames(image.get(), path.c_str(), 0, 1);
  nifti_image_write(image.get());

  for (int64_t v = 0; v < 6; ++v) {
    std::vector<double> expected = one_volume;
    for (double& x : expected) x += 1000.0 * static_cast<double>(v);
    EXPECT_TRUE(torch::equal(read_nifti_volume(path, v).voxels.to(torch::kFloat64),
                             expected_canonical(size, expected, permuted)))
        << "volume " << v;
  }
  const Volume fifth = read_nifti_volume(path, 4);
  write_nifti_mask_like(dir.file("mask.nii"), fifth.voxels > 4010, fifth);
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> mask(nifti_image_read(dir.file("mask.nii").c_str(), 0),
                                                            nifti_image_free);
  ASSERT_TRUE(mask);
  EXPECT_EQ(mask->dim[0], 3);
  EXPECT_EQ(mask->nvox, one_volume.size());
  EXPECT_TRUE(torch::equal(read_nifti_volume(dir.file("mask.nii")).voxels > 0.5, fifth.voxels > 4010));
}

TEST(NiftiVolume, ATwoDimensionalFileIsAVolumeOfOneSlice) {
  ScratchDir dir;
  const int64_t dims[8] = {2, 5, 4, 0, 0, 0, 0, 0};
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> image(nifti_make_new_nim(dims, DT_FLOAT32, 1), nifti_image_free);
  ASSERT_TRUE(image);
  for (int64_t v = 0; v < 20; ++v) static_cast<float*>(image->data)[v] = static_cast<float>(v) + 0.5f;
  image->qform_code = image->sform_code = 0;
  image->pixdim[1] = image->dx = 0.5;
  image->pixdim[2] = image->dy = 0.75;
  const std::string path = dir.file("plane.nii");
  nifti_set_filenames(image.get(), path.c_str(), 0, 1);
  nifti_image_write(image.get());

  const Volume volume = read_nifti_volume(path);
  EXPECT_TRUE(torch::equal(volume.voxels, torch::arange(20, torch::kFloat32).add(0.5f).view({1, 4, 5})));
  EXPECT_EQ(volume.spacing_mm, (std::array<double, 3>{1.0, 0.75, 0.5}));  // no slice thickness: 1 mm
}

TEST(NiftiVolume, Uint8GzipWithoutOrientationIsTakenAsRasUnscaled) {
  ScratchDir dir;
  const std::array<int, 3> size{5, 4, 3};
  const auto values = ramp(size, 1);
  write_with_niftilib(dir.file("plain.nii.gz"), DT_UINT8, size, values, [](nifti_image& h) {
    h.qform_code = h.sform_code = 0;
    h.scl_slope = 0.0;  // NIfTI: no scaling
    h.scl_inter = 7.0;  // ignored when the slope is 0
  });
  const Volume volume = read_nifti_volume(dir.file("plain.nii.gz"));
  const auto expected = torch::tensor(values, torch::kFloat64).view({3, 4, 5});
  EXPECT_TRUE(torch::equal(volume.voxels.to(torch::kFloat64), expected));
}

TEST(NiftiVolume, HdrImgPairReadByEitherHalf) {
  ScratchDir dir;
  const std::array<int, 3> size{5, 4, 3};
  const auto values = ramp(size, 2);
  write_with_niftilib(dir.file("pair.hdr"), DT_INT16, size, values, [](nifti_image& h) {
    h.qform_code = h.sform_code = 0;
    h.scl_slope = 0.0;
  });
  ASSERT_TRUE(std::filesystem::exists(dir.file("pair.img")));
  const auto expected = torch::tensor(values, torch::kFloat64).view({3, 4, 5});
  for (const char* name : {"pair.hdr", "pair.img"})
    EXPECT_TRUE(torch::equal(read_nifti_volume(dir.file(name)).voxels.to(torch::kFloat64), expected)) << name;
  std::filesystem::copy_file(dir.file("pair.img"), dir.file("lone.img"));
  expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("lone.img")); }, dir.file("lone.img"),
                               "without its .hdr");
}

TEST(NiftiVolume, ByteSwappedFilesOfEitherVersionRead) {
  ScratchDir dir;
  const std::array<int, 3> size{4, 3, 2};
  const auto values = ramp(size, -150);  // negative and positive int16, both bytes in use
  const int64_t dims[8] = {3, size[0], size[1], size[2], 1, 1, 1, 1};
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> image(nifti_make_new_nim(dims, DT_INT16, 1), nifti_image_free);
  ASSERT_TRUE(image);
  for (size_t v = 0; v < values.size(); ++v) static_cast<int16_t*>(image->data)[v] = static_cast<int16_t>(values[v]);
  write_single_file_by_hand<nifti_1_header>(dir.file("v1.nii"), *image, true);
  write_single_file_by_hand<nifti_2_header>(dir.file("v2.nii"), *image, true);
  const auto expected = torch::tensor(values, torch::kFloat64).view({2, 3, 4});
  for (const char* name : {"v1.nii", "v2.nii"}) {
    ASSERT_NE(header_size_field(dir.file(name)), 348) << name;  // really the other byte order
    ASSERT_NE(header_size_field(dir.file(name)), 540) << name;
    EXPECT_TRUE(torch::equal(read_nifti_volume(dir.file(name)).voxels.to(torch::kFloat64), expected)) << name;
  }
}

TEST(NiftiVolume, WriteThenReadRoundTrips) {
  ScratchDir dir;
  Volume volume{torch::randn({3, 5, 4}), {2.5, 1.0, 1.25}};
  for (const char* name : {"v.nii", "v.nii.gz"}) {
    write_nifti_volume(dir.file(name), volume);
    const Volume back = read_nifti_volume(dir.file(name));
    EXPECT_TRUE(torch::equal(back.voxels, volume.voxels)) << name;
    EXPECT_EQ(back.spacing_mm, volume.spacing_mm) << name;
  }
}

TEST(NiftiVolume, ReadsColin27FromMricronData) {
  const std::string path = "/usr/share/mricron/templates/ch2.nii.gz";  // uint8, sform RAS, 1 mm
  const Volume volume = read_nifti_volume(path);
  EXPECT_EQ(volume.voxels.sizes(), (std::vector<int64_t>{181, 217, 181}));
  EXPECT_EQ(volume.spacing_mm, (std::array<double, 3>{1.0, 1.0, 1.0}));
  EXPECT_EQ(volume.voxels.max().item<float>(), 254.0f);
}

TEST(NiftiVolume, BadFilesGiveOneLineErrorsNamingTheFile) {
  ScratchDir dir;
  expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("absent.nii")); }, dir.file("absent.nii"),
                               "no such file");

  const std::string garbage = dir.file("garbage.nii");
  write_file_atomic(garbage, std::string(500, 'x'));
  expect_one_line_error_naming([&] { (void)read_nifti_volume(garbage); }, garbage, "not a NIfTI file");

  // A NIfTI-2 header with dim[0] out of range, a NIfTI-1 one cut short of its magic, and an
  // ANALYZE 7.5 header (no magic).
  write_with_niftilib(dir.file("v2.nii"), DT_UINT8, {3, 3, 3}, ramp({3, 3, 3}, 0), [](nifti_image&) {},
                      NIFTI_FTYPE_NIFTI2_1);
  auto v2 = read_file_bytes(dir.file("v2.nii"));
  const int64_t nine = 9;
  std::memcpy(v2.data() + offsetof(nifti_2_header, dim), &nine, sizeof nine);
  write_file_atomic(dir.file("dim9.nii"), v2.data(), v2.size());
  expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("dim9.nii")); }, dir.file("dim9.nii"),
                               "bad NIfTI header: dim[0] is 9");
  write_file_atomic(dir.file("short2.nii"), v2.data(), 400);
  expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("short2.nii")); }, dir.file("short2.nii"),
                               "truncated NIfTI-2 header");
  write_with_niftilib(dir.file("v1.nii"), DT_UINT8, {3, 3, 3}, ramp({3, 3, 3}, 0), [](nifti_image&) {});
  auto analyze = read_file_bytes(dir.file("v1.nii"));
  std::memset(analyze.data() + offsetof(nifti_1_header, magic), 0, 4);
  write_file_atomic(dir.file("analyze.nii"), analyze.data(), analyze.size());
  expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("analyze.nii")); }, dir.file("analyze.nii"),
                               "ANALYZE 7.5 is not read");
  // A single file whose voxels would start inside its header, or nowhere.
  for (const float offset : {-1.0f, 100.0f, std::nanf("")}) {
    auto shifted = read_file_bytes(dir.file("v1.nii"));
    std::memcpy(shifted.data() + offsetof(nifti_1_header, vox_offset), &offset, sizeof offset);
    write_file_atomic(dir.file("offset.nii"), shifted.data(), shifted.size());
    expect_one_line_error_naming([&] { (void)read_nifti_volume(dir.file("offset.nii")); }, dir.file("offset.nii"),
                                 "bad NIfTI header: vox_offset");
  }

  const Volume volume{torch::rand({6, 7, 8}), {1, 1, 1}};
  for (const char* name : {"cut.nii", "cut.nii.gz"}) {
    const std::string path = dir.file(name);
    write_nifti_volume(path, volume);
    const auto bytes = read_file_bytes(path);
    // .nii: the header and half the voxels; .nii.gz: half the compressed stream.
    const size_t keep = std::string(name) == "cut.nii" ? 352 + 6 * 7 * 8 * 2 : bytes.size() / 2;
    write_file_atomic(path, bytes.data(), keep);
    expect_one_line_error_naming([&] { (void)read_nifti_volume(path); }, path, "truncated");
  }

  const std::string series = dir.file("series.nii");
  const int64_t dims[8] = {4, 3, 3, 3, 2, 1, 1, 1};
  nifti_image* image = nifti_make_new_nim(dims, DT_FLOAT32, 1);
  nifti_set_filenames(image, series.c_str(), 0, 1);
  nifti_image_write(image);
  nifti_image_free(image);
  expect_one_line_error_naming([&] { (void)read_nifti_volume(series); }, series, "holds 2 volumes");
  expect_one_line_error_naming([&] { (void)read_nifti_volume(series, 2); }, series, "has no volume 2: it holds 2");
  const std::string single = dir.file("single.nii");
  write_nifti_volume(single, Volume{torch::ones({2, 3, 4}), {1, 1, 1}});
  expect_one_line_error_naming([&] { (void)read_nifti_volume(single, 1); }, single, "has no volume 1: it holds 1");

  const std::string mask = dir.file("mask.nii");
  write_nifti_volume(mask, Volume{torch::ones({6, 7, 9}), {1, 1, 1}});
  expect_one_line_error_naming([&] { (void)read_nifti_mask(mask, volume, "t1.nii"); }, mask,
                               "mask is 6x7x9 voxels (SxAxR) but its volume t1.nii is 6x7x8");
}

}  // namespace
}  // namespace medsad::data
