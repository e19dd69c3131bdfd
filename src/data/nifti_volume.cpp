#include "data/nifti_volume.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

#include <nifti1_io.h>

#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"

namespace medsad::data {
namespace {

using NiftiImage = std::unique_ptr<nifti_image, void (*)(nifti_image*)>;

// value · slope + inter over n raw voxels of type T, computed in double (int32 and larger
// values do not fit a float's mantissa before scaling).
template <typename T>
void convert_voxels(const void* raw, size_t n, double slope, double inter, float* out) {
  const T* in = static_cast<const T*>(raw);
  for (size_t v = 0; v < n; ++v) out[v] = static_cast<float>(static_cast<double>(in[v]) * slope + inter);
}

torch::Tensor voxels_as_float(const nifti_image& image, const std::string& path) {
  // NIfTI: scl_slope 0 means the stored values are the values (niftilib zeroes a non-finite one).
  const bool scaled = image.scl_slope != 0.0f;
  const double slope = scaled ? image.scl_slope : 1.0, inter = scaled ? image.scl_inter : 0.0;
  auto out = torch::empty({static_cast<int64_t>(image.nvox)}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const size_t n = image.nvox;
  switch (image.datatype) {
    case DT_UINT8: convert_voxels<uint8_t>(image.data, n, slope, inter, dst); break;
    case DT_INT8: convert_voxels<int8_t>(image.data, n, slope, inter, dst); break;
    case DT_UINT16: convert_voxels<uint16_t>(image.data, n, slope, inter, dst); break;
    case DT_INT16: convert_voxels<int16_t>(image.data, n, slope, inter, dst); break;
    case DT_UINT32: convert_voxels<uint32_t>(image.data, n, slope, inter, dst); break;
    case DT_INT32: convert_voxels<int32_t>(image.data, n, slope, inter, dst); break;
    case DT_UINT64: convert_voxels<uint64_t>(image.data, n, slope, inter, dst); break;
    case DT_INT64: convert_voxels<int64_t>(image.data, n, slope, inter, dst); break;
    case DT_FLOAT32: convert_voxels<float>(image.data, n, slope, inter, dst); break;
    case DT_FLOAT64: convert_voxels<double>(image.data, n, slope, inter, dst); break;
    default:
      fail(path, std::string("unsupported NIfTI datatype ") + nifti_datatype_string(image.datatype) +
                     " (expected a real-valued scalar type)");
  }
  return out;
}

// Permutes and flips voxels [nk, nj, ni] (file order, i fastest) into [S, A, R].
Volume to_ras(const torch::Tensor& file_order, const nifti_image& image, const std::string& path) {
  int codes[3] = {NIFTI_L2R, NIFTI_P2A, NIFTI_I2S};  // no orientation recorded: RAS already
  if (image.sform_code > 0)
    nifti_mat44_to_orientation(image.sto_xyz, &codes[0], &codes[1], &codes[2]);
  else if (image.qform_code > 0)
    nifti_mat44_to_orientation(image.qto_xyz, &codes[0], &codes[1], &codes[2]);
  const float pixdim[3] = {image.dx, image.dy, image.dz};

  std::vector<int64_t> permutation(3, -1);  // output dim -> file dim
  std::vector<int64_t> flips;               // output dims whose index runs R->L, A->P or S->I
  Volume volume;
  for (int axis = 0; axis < 3; ++axis) {      // file axes i, j, k
    if (codes[axis] < NIFTI_L2R || codes[axis] > NIFTI_S2I)
      fail(path, "degenerate orientation matrix (its voxel axes do not span 3-D space)");
    const int physical = (codes[axis] - 1) / 2;  // 0 x (L-R), 1 y (P-A), 2 z (I-S)
    const int64_t out_dim = 2 - physical, file_dim = 2 - axis;
    permutation[static_cast<size_t>(out_dim)] = file_dim;
    if (codes[axis] % 2 == 0) flips.push_back(out_dim);
    volume.spacing_mm[static_cast<size_t>(out_dim)] = std::abs(pixdim[axis]);
  }
  auto canonical = file_order.permute(permutation);  // [S, A, R]
  if (!flips.empty()) canonical = canonical.flip(flips);
  volume.voxels = canonical.contiguous();
  for (size_t d = 0; d < 3; ++d) volume.permutation[d] = permutation[d];
  volume.flips = flips;
  return volume;
}

std::string shape_text(const torch::Tensor& t) {
  return std::to_string(t.size(0)) + "x" + std::to_string(t.size(1)) + "x" + std::to_string(t.size(2));
}

// The first bytes of a file once gunzipped (plain files are read as they are) and how many
// bytes it holds in all; size -1 when the gzip stream is corrupt or cut short.
struct StoredBytes {
  std::string head;  // up to the 348 bytes of a NIfTI-1 header
  int64_t size = 0;
};

StoredBytes scan_stored_bytes(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) fail(path, "cannot open");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(file, gzclose);
  StoredBytes stored;
  std::vector<char> buffer(1 << 16);
  int got;
  while ((got = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
    const size_t missing = sizeof(nifti_1_header) - std::min(stored.head.size(), sizeof(nifti_1_header));
    stored.head.append(buffer.data(), std::min<size_t>(static_cast<size_t>(got), missing));
    stored.size += got;
  }
  if (got < 0) stored.size = -1;
  return stored;
}

// The header checks niftilib would report on stderr (with no way to silence them), made here
// so that a bad file gives our one-line error instead.
void check_header(const StoredBytes& stored, const std::string& path) {
  if (stored.head.size() < sizeof(nifti_1_header))
    fail(path, stored.size < 0 ? "truncated or corrupt gzip stream"
                               : "not a NIfTI-1 file (" + std::to_string(stored.size) + " bytes, less than a header)");
  nifti_1_header header;
  std::memcpy(&header, stored.head.data(), sizeof header);
  if (header.sizeof_hdr != 348) {
    swap_nifti_header(&header, 1);  // a file written on a machine of the other byte order
    if (header.sizeof_hdr != 348) fail(path, "not a NIfTI-1 file (no valid .nii, .nii.gz or .hdr header)");
  }
  if (std::memcmp(header.magic, "n+1", 4) != 0 && std::memcmp(header.magic, "ni1", 4) != 0)
    fail(path, "not a NIfTI-1 file (no n+1 or ni1 magic; ANALYZE 7.5 and NIfTI-2 are not read)");
  if (header.dim[0] < 1 || header.dim[0] > 7)
    fail(path, "bad NIfTI header: dim[0] is " + std::to_string(header.dim[0]) + " (expected 1 to 7)");
  for (int d = 1; d <= header.dim[0]; ++d)
    if (header.dim[d] < 1)
      fail(path, "bad NIfTI header: dim[" + std::to_string(d) + "] is " + std::to_string(header.dim[d]));
  if (!nifti_datatype_is_valid(header.datatype, 1) || header.datatype == DT_BINARY)
    fail(path, "bad NIfTI header: unknown datatype code " + std::to_string(header.datatype));
}

// gzip (not raw zlib) stream, the format niftilib's znzlib reads.
std::string gzip(const std::string& bytes, const std::string& path) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    fail(path, "cannot start gzip compression");
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (status != Z_STREAM_END) fail(path, "gzip compression failed");
  return out;
}

// A single-file .nii(.gz): `header` with magic n+1 and the voxels right after it.
void write_single_file(const std::string& path, nifti_1_header header, const void* voxels, size_t bytes_of_voxels) {
  header.sizeof_hdr = 348;
  header.vox_offset = 352.0f;  // 348-byte header + the 4-byte "no extensions" flag
  std::memcpy(header.magic, "n+1\0", 4);
  std::string bytes(352, '\0');
  std::memcpy(bytes.data(), &header, sizeof header);
  bytes.append(static_cast<const char*>(voxels), bytes_of_voxels);
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  write_file_atomic(path, gz ? gzip(bytes, path) : bytes);
}

// The header file of `path`: itself, or for the .img half of a .hdr/.img pair (gzipped or not,
// any case) the .hdr beside it, which is the file niftilib opens.
std::string header_file(const std::string& path) {
  const std::string lower = ascii_lower(path);
  for (const std::string ext : {".img", ".img.gz"}) {
    if (lower.size() <= ext.size() || !ends_with(lower, ext)) continue;
    const size_t at = lower.size() - ext.size();
    std::error_code ec;
    for (const char* hdr : {".hdr", ".HDR", ".hdr.gz", ".HDR.GZ"}) {
      const std::string candidate = path.substr(0, at) + hdr;
      if (std::filesystem::exists(candidate, ec)) return candidate;
    }
    fail(path, "the image half of a .hdr/.img pair, without its .hdr beside it");
  }
  return path;
}

}  // namespace

Volume read_nifti_volume(const std::string& given_path) {
  std::error_code ec;
  if (!std::filesystem::exists(given_path, ec)) fail(given_path, "no such file");
  if (std::filesystem::is_directory(given_path, ec)) fail(given_path, "is a directory, expected a NIfTI file");
  const std::string path = header_file(given_path);
  const StoredBytes stored = scan_stored_bytes(path);
  check_header(stored, path);
  // niftilib prints its own diagnostics on stderr unless told not to; ours is the Error below.
  nifti_set_debug_level(0);
  NiftiImage image(nifti_image_read(path.c_str(), 0), nifti_image_free);
  if (!image) fail(path, "not a readable NIfTI-1 file (niftilib rejects its header)");

  int64_t volumes = 1;
  for (int d = 4; d <= image->dim[0]; ++d) volumes *= image->dim[d];
  if (volumes > 1) fail(path, "holds " + std::to_string(volumes) + " volumes; expected a single 3-D volume");
  // niftilib zero-fills missing voxels without a word: check that the data is all there first.
  const std::string data_file = image->iname ? image->iname : path;
  const int64_t needed = image->iname_offset + static_cast<int64_t>(image->nvox) * image->nbyper;
  const int64_t held = data_file == path ? stored.size : scan_stored_bytes(data_file).size;
  if (held < needed)
    fail(data_file, held < 0 ? "truncated or corrupt gzip stream"
                             : "truncated: " + std::to_string(needed) + " bytes expected (header and " +
                                   std::to_string(image->nvox) + " voxels), " + std::to_string(held) + " present");
  if (nifti_image_load(image.get()) != 0 || image->data == nullptr) fail(path, "cannot read the voxel data");

  const auto flat = voxels_as_float(*image, path);
  const auto file_order = flat.view({image->nz, image->ny, image->nx});  // [nk, nj, ni], i fastest
  Volume volume = to_ras(file_order, *image, path);
  volume.header = std::make_shared<const nifti_1_header>(nifti_convert_nim2nhdr(image.get()));
  return volume;
}

torch::Tensor read_nifti_mask(const std::string& mask_path, const Volume& volume, const std::string& volume_path) {
  const Volume mask = read_nifti_volume(mask_path);
  if (!mask.voxels.sizes().equals(volume.voxels.sizes()))
    fail(mask_path, "mask is " + shape_text(mask.voxels) + " voxels (SxAxR) but its volume " + volume_path + " is " +
                        shape_text(volume.voxels));
  return mask.voxels > 0;
}

namespace {

// Writes `voxels` ([nk, nj, ni], i fastest; float32 or uint8 as stored) with `affine` (voxel
// index to RAS mm, row-major 4x4) as the sform and, as near as a rotation allows, the qform.
void write_with_affine(const std::string& path, const torch::Tensor& voxels, const std::array<double, 16>& affine,
                       const char* description) {
  const int dims[8] = {3, static_cast<int>(voxels.size(2)), static_cast<int>(voxels.size(1)),
                       static_cast<int>(voxels.size(0)), 1, 1, 1, 1};
  const bool bytes = voxels.scalar_type() == torch::kUInt8;
  NiftiImage image(nifti_make_new_nim(dims, bytes ? DT_UINT8 : DT_FLOAT32, 0), nifti_image_free);
  if (!image) fail(path, "cannot create a NIfTI header");
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) image->sto_xyz.m[r][c] = static_cast<float>(affine[static_cast<size_t>(r * 4 + c)]);
  // The qform holds a rotation, voxel sizes and an offset; niftilib derives them from the sform.
  nifti_mat44_to_quatern(image->sto_xyz, &image->quatern_b, &image->quatern_c, &image->quatern_d, &image->qoffset_x,
                         &image->qoffset_y, &image->qoffset_z, &image->dx, &image->dy, &image->dz, &image->qfac);
  image->pixdim[0] = image->qfac;
  image->pixdim[1] = image->dx;
  image->pixdim[2] = image->dy;
  image->pixdim[3] = image->dz;
  image->qform_code = image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  if (bytes) image->cal_max = 1.0f;
  std::strncpy(image->descrip, description, sizeof image->descrip - 1);
  const auto contiguous = voxels.contiguous();
  write_single_file(path, nifti_convert_nim2nhdr(image.get()), contiguous.data_ptr(),
                    static_cast<size_t>(contiguous.numel()) * contiguous.element_size());
}

}  // namespace

void write_nifti_volume(const std::string& path, const Volume& volume) {
  TORCH_CHECK(volume.voxels.dim() == 3, "write_nifti_volume expects [S, A, R], got ", volume.voxels.sizes());
  // [S, A, R] is the file order [nk, nj, ni] of an RAS grid with its origin at voxel 0.
  std::array<double, 16> affine{};
  affine[0] = volume.spacing_mm[2];
  affine[5] = volume.spacing_mm[1];
  affine[10] = volume.spacing_mm[0];
  affine[15] = 1.0;
  write_with_affine(path, volume.voxels.to(torch::kFloat32), affine, "");
}

void write_nifti_mask_with_affine(const std::string& path, const torch::Tensor& mask,
                                  const std::array<double, 16>& affine) {
  TORCH_CHECK(mask.dim() == 3, "write_nifti_mask_with_affine expects [nk, nj, ni], got ", mask.sizes());
  write_with_affine(path, mask.to(torch::kUInt8), affine, "medsad lesion mask");
}

void write_nifti_mask_like(const std::string& path, const torch::Tensor& mask, const Volume& source) {
  TORCH_CHECK(source.header, "write_nifti_mask_like: the source volume was not read from a file");
  TORCH_CHECK(mask.sizes().equals(source.voxels.sizes()), "write_nifti_mask_like: mask ", mask.sizes(),
              " but volume ", source.voxels.sizes());
  // Undo to_ras: flips are their own inverse, then the inverse permutation.
  auto file_order = source.flips.empty() ? mask : mask.flip(source.flips);
  std::vector<int64_t> inverse(3);
  for (int64_t d = 0; d < 3; ++d) inverse[static_cast<size_t>(source.permutation[static_cast<size_t>(d)])] = d;
  const auto voxels = file_order.permute(inverse).to(torch::kUInt8).contiguous();  // [nk, nj, ni]
  nifti_1_header header = *source.header;
  header.datatype = DT_UINT8;
  header.bitpix = 8;
  header.scl_slope = 1.0f;
  header.scl_inter = 0.0f;
  header.cal_min = 0.0f;
  header.cal_max = 1.0f;
  header.dim[0] = 3;  // a single volume, as read_nifti_volume requires of its input
  for (int d = 4; d < 8; ++d) header.dim[d] = 1;
  std::strncpy(header.descrip, "medsad lesion mask", sizeof header.descrip);
  write_single_file(path, header, voxels.data_ptr(), static_cast<size_t>(voxels.numel()));
}

}  // namespace medsad::data
