#include "data/nifti_volume.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <type_traits>

#include <nifti2_io.h>  // niftilib's reader of NIfTI-1 and NIfTI-2 alike

#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"

namespace medsad::data {

using NiftiImage = std::unique_ptr<nifti_image, void (*)(nifti_image*)>;

// The file's header as niftilib read it (no voxels: grid, voxel sizes, qform and sform) and its
// NIfTI version, for writing a result back on the same grid in the same format.
struct NiftiHeader {
  NiftiImage image;
  int version;  // 1 or 2 (niftilib's nifti_type says NIfTI-1 for both)
};

namespace {

// value · slope + inter over n raw voxels of type T, computed in double (int32 and larger
// values do not fit a float's mantissa before scaling).
template <typename T>
void convert_voxels(const void* raw, size_t n, double slope, double inter, float* out) {
  const T* in = static_cast<const T*>(raw);
  for (size_t v = 0; v < n; ++v) out[v] = static_cast<float>(static_cast<double>(in[v]) * slope + inter);
}

// Voxels [first, first + n) of the loaded image, scaled, as float32 [n].
torch::Tensor voxels_as_float(const nifti_image& image, size_t first, size_t n, const std::string& path) {
  // NIfTI: scl_slope 0 means the stored values are the values (niftilib zeroes a non-finite one).
  const bool scaled = image.scl_slope != 0.0;
  const double slope = scaled ? image.scl_slope : 1.0, inter = scaled ? image.scl_inter : 0.0;
  auto out = torch::empty({static_cast<int64_t>(n)}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const char* src = static_cast<const char*>(image.data) + first * static_cast<size_t>(image.nbyper);
  switch (image.datatype) {
    case DT_UINT8: convert_voxels<uint8_t>(src, n, slope, inter, dst); break;
    case DT_INT8: convert_voxels<int8_t>(src, n, slope, inter, dst); break;
    case DT_UINT16: convert_voxels<uint16_t>(src, n, slope, inter, dst); break;
    case DT_INT16: convert_voxels<int16_t>(src, n, slope, inter, dst); break;
    case DT_UINT32: convert_voxels<uint32_t>(src, n, slope, inter, dst); break;
    case DT_INT32: convert_voxels<int32_t>(src, n, slope, inter, dst); break;
    case DT_UINT64: convert_voxels<uint64_t>(src, n, slope, inter, dst); break;
    case DT_INT64: convert_voxels<int64_t>(src, n, slope, inter, dst); break;
    case DT_FLOAT32: convert_voxels<float>(src, n, slope, inter, dst); break;
    case DT_FLOAT64: convert_voxels<double>(src, n, slope, inter, dst); break;
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
    nifti_dmat44_to_orientation(image.sto_xyz, &codes[0], &codes[1], &codes[2]);
  else if (image.qform_code > 0)
    nifti_dmat44_to_orientation(image.qto_xyz, &codes[0], &codes[1], &codes[2]);
  const double pixdim[3] = {image.dx, image.dy, image.dz};

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
    // A size of 0 (a 2-D file's third axis) or one not a number says nothing: 1 mm.
    const double size = std::abs(pixdim[axis]);
    volume.spacing_mm[static_cast<size_t>(out_dim)] = size > 0 && std::isfinite(size) ? size : 1.0;
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
  std::string head;  // up to the 540 bytes of a NIfTI-2 header
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
    const size_t missing = sizeof(nifti_2_header) - std::min(stored.head.size(), sizeof(nifti_2_header));
    stored.head.append(buffer.data(), std::min<size_t>(static_cast<size_t>(got), missing));
    stored.size += got;
  }
  if (got < 0) stored.size = -1;
  return stored;
}

// The checks of one header version's fields; `magics` are its single-file and pair signatures.
template <typename Header>
void check_header_fields(const Header& header, const char* const (&magics)[2], const std::string& path) {
  if (std::memcmp(header.magic, magics[0], 4) != 0 && std::memcmp(header.magic, magics[1], 4) != 0)
    fail(path, "not a NIfTI file (no NIfTI magic; ANALYZE 7.5 is not read)");
  if (header.dim[0] < 1 || header.dim[0] > 7)
    fail(path, "bad NIfTI header: dim[0] is " + std::to_string(header.dim[0]) + " (expected 1 to 7)");
  for (int d = 1; d <= header.dim[0]; ++d)
    if (header.dim[d] < 1)
      fail(path, "bad NIfTI header: dim[" + std::to_string(d) + "] is " + std::to_string(header.dim[d]));
  if (!nifti_datatype_is_valid(header.datatype, 1) || header.datatype == DT_BINARY)
    fail(path, "bad NIfTI header: unknown datatype code " + std::to_string(header.datatype));
  // The voxels start after the header in a single file, anywhere in a pair's .img; niftilib
  // quietly reads a negative or NaN offset as the header's end, shifting every voxel.
  const double offset = static_cast<double>(header.vox_offset);
  const double least = std::memcmp(header.magic, magics[0], 4) == 0 ? static_cast<double>(sizeof(Header)) : 0.0;
  if (!std::isfinite(offset) || offset < least)
    fail(path, "bad NIfTI header: vox_offset " + std::to_string(offset) + " (expected at least " +
                   std::to_string(static_cast<int64_t>(least)) + ")");
}

// The header checks niftilib would report on stderr (with no way to silence them), made here
// so that a bad file gives our one-line error instead. NIfTI-1 and NIfTI-2 are told apart by
// sizeof_hdr (348 or 540), in either byte order. Returns the version, 1 or 2.
int check_header(const StoredBytes& stored, const std::string& path) {
  if (stored.head.size() < sizeof(nifti_1_header))
    fail(path, stored.size < 0 ? "truncated or corrupt gzip stream"
                               : "not a NIfTI file (" + std::to_string(stored.size) + " bytes, less than a header)");
  int32_t sizeof_hdr = 0;
  std::memcpy(&sizeof_hdr, stored.head.data(), sizeof sizeof_hdr);
  const int32_t swapped_size = static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(sizeof_hdr)));
  const bool swapped = sizeof_hdr != 348 && sizeof_hdr != 540;  // written on a machine of the other byte order
  if (swapped) sizeof_hdr = swapped_size;
  if (sizeof_hdr == 348) {
    nifti_1_header header;
    std::memcpy(&header, stored.head.data(), sizeof header);
    if (swapped) swap_nifti_header(&header, 1);
    check_header_fields(header, {"n+1", "ni1"}, path);
    return 1;
  }
  if (sizeof_hdr == 540) {
    if (stored.head.size() < sizeof(nifti_2_header))
      fail(path, stored.size < 0 ? "truncated or corrupt gzip stream" : "truncated NIfTI-2 header");
    nifti_2_header header;
    std::memcpy(&header, stored.head.data(), sizeof header);
    if (swapped) swap_nifti_header(&header, 2);
    check_header_fields(header, {"n+2", "ni2"}, path);
    return 2;
  }
  fail(path, "not a NIfTI file (no valid .nii, .nii.gz or .hdr header)");
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

// A single-file .nii(.gz): `header` (nifti_1_header or nifti_2_header) with its magic, then the
// "no extensions" flag, then the voxels.
template <typename Header>
void write_single_file(const std::string& path, Header header, const void* voxels, size_t bytes_of_voxels) {
  static_assert(sizeof(nifti_1_header) == 348 && sizeof(nifti_2_header) == 540, "packed NIfTI headers");
  header.sizeof_hdr = sizeof(Header);
  header.vox_offset = sizeof(Header) + 4;  // 352 or 544
  if constexpr (std::is_same_v<Header, nifti_2_header>)
    std::memcpy(header.magic, "n+2\0\r\n\032\n", 8);
  else
    std::memcpy(header.magic, "n+1\0", 4);
  std::string bytes(sizeof(Header) + 4, '\0');
  std::memcpy(bytes.data(), &header, sizeof header);
  bytes.append(static_cast<const char*>(voxels), bytes_of_voxels);
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  write_file_atomic(path, gz ? gzip(bytes, path) : bytes);
}

// Writes `image` (a header) with `voxels` after it as a NIfTI-`version` (1 or 2) single file.
void write_image(const std::string& path, const nifti_image& image, int version, const void* voxels,
                 size_t bytes_of_voxels) {
  if (version == 2) {
    nifti_2_header header;
    if (nifti_convert_nim2n2hdr(&image, &header) != 0) fail(path, "cannot make a NIfTI-2 header");
    write_single_file(path, header, voxels, bytes_of_voxels);
  } else {
    nifti_1_header header;
    if (nifti_convert_nim2n1hdr(&image, &header) != 0)
      fail(path, "cannot make a NIfTI-1 header (a dimension over 32767 voxels?)");
    write_single_file(path, header, voxels, bytes_of_voxels);
  }
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

Volume read_nifti_volume(const std::string& given_path, int64_t volume_index) {
  std::error_code ec;
  if (!std::filesystem::exists(given_path, ec)) fail(given_path, "no such file");
  if (std::filesystem::is_directory(given_path, ec)) fail(given_path, "is a directory, expected a NIfTI file");
  const std::string path = header_file(given_path);
  const StoredBytes stored = scan_stored_bytes(path);
  const int version = check_header(stored, path);
  // niftilib prints its own diagnostics on stderr unless told not to; ours is the Error below.
  nifti_set_debug_level(0);
  NiftiImage image(nifti_image_read(path.c_str(), 0), nifti_image_free);
  if (!image) fail(path, "not a readable NIfTI file (niftilib rejects its header)");

  int64_t volumes = 1;
  for (int d = 4; d <= image->dim[0]; ++d) volumes *= image->dim[d];
  if (volume_index < 0 && volumes > 1)
    fail(path, "holds " + std::to_string(volumes) +
                   " volumes (a 4-D file); expected a single 3-D volume or the index of one (--volume-index)");
  if (volume_index >= volumes)
    fail(path, "has no volume " + std::to_string(volume_index) + ": it holds " + std::to_string(volumes) +
                   (volumes > 1 ? " (0 to " + std::to_string(volumes - 1) + ")" : ""));
  // niftilib zero-fills missing voxels without a word: check that the data is all there first.
  const std::string data_file = image->iname ? image->iname : path;
  const int64_t needed = image->iname_offset + static_cast<int64_t>(image->nvox) * image->nbyper;
  const int64_t held = data_file == path ? stored.size : scan_stored_bytes(data_file).size;
  if (held < needed)
    fail(data_file, held < 0 ? "truncated or corrupt gzip stream"
                             : "truncated: " + std::to_string(needed) + " bytes expected (header and " +
                                   std::to_string(image->nvox) + " voxels), " + std::to_string(held) + " present");
  if (nifti_image_load(image.get()) != 0 || image->data == nullptr) fail(path, "cannot read the voxel data");

  // A 1-D or 2-D file is a volume of one row or one slice (niftilib leaves the missing sizes 0).
  const int64_t ni = image->nx, nj = image->dim[0] >= 2 ? image->ny : 1, nk = image->dim[0] >= 3 ? image->nz : 1;
  const auto per_volume = static_cast<size_t>(ni * nj * nk);
  const auto flat = voxels_as_float(*image, per_volume * static_cast<size_t>(std::max<int64_t>(volume_index, 0)),
                                    per_volume, path);
  const auto file_order = flat.view({nk, nj, ni});  // i fastest
  Volume volume = to_ras(file_order, *image, path);
  NiftiImage geometry(nifti_copy_nim_info(image.get()), nifti_image_free);  // the header without voxels
  volume.header = std::make_shared<const NiftiHeader>(NiftiHeader{std::move(geometry), version});
  return volume;
}

namespace {

// More classes than any anatomical atlas has (FreeSurfer's counts in the hundreds).
constexpr int64_t kMaxLabelClasses = 1000;

// The volume in `mask_path`, which must lie on `volume`'s grid.
Volume read_on_grid_of(const std::string& mask_path, const Volume& volume, const std::string& volume_path) {
  Volume mask = read_nifti_volume(mask_path);
  if (!mask.voxels.sizes().equals(volume.voxels.sizes()))
    fail(mask_path, "mask is " + shape_text(mask.voxels) + " voxels (SxAxR) but its volume " + volume_path + " is " +
                        shape_text(volume.voxels));
  return mask;
}

}  // namespace

torch::Tensor read_nifti_mask(const std::string& mask_path, const Volume& volume, const std::string& volume_path) {
  return read_on_grid_of(mask_path, volume, volume_path).voxels > 0;
}

torch::Tensor read_nifti_labels(const std::string& label_path, const Volume& volume, const std::string& volume_path) {
  const auto labels = read_on_grid_of(label_path, volume, volume_path).voxels;
  // A segmentation holds whole class numbers; anything else is the wrong file (an intensity
  // image given as the labels) or one resampled with interpolation.
  if (labels.lt(0).any().item<bool>()) fail(label_path, "label volume holds negative values");
  if (!labels.eq(labels.round()).all().item<bool>())
    fail(label_path, "label volume holds values that are not whole numbers (an image rather than a "
                     "segmentation, or one resampled with interpolation)");
  const auto sorted = std::get<0>(labels.flatten().sort());
  const int64_t classes = 1 + sorted.slice(0, 1).ne(sorted.slice(0, 0, -1)).sum().item<int64_t>();
  if (classes > kMaxLabelClasses)
    fail(label_path, "label volume holds " + std::to_string(classes) + " distinct values (an image rather than a "
                     "segmentation, which holds at most " + std::to_string(kMaxLabelClasses) + ")");
  return labels > 0;
}

namespace {

// Writes `voxels` ([nk, nj, ni], i fastest; float32 or uint8 as stored) with `affine` (voxel
// index to RAS mm, row-major 4x4) as the sform and, as near as a rotation allows, the qform.
void write_with_affine(const std::string& path, const torch::Tensor& voxels, const std::array<double, 16>& affine,
                       const char* description) {
  const int64_t dims[8] = {3, voxels.size(2), voxels.size(1), voxels.size(0), 1, 1, 1, 1};
  const bool bytes = voxels.scalar_type() == torch::kUInt8;
  NiftiImage image(nifti_make_new_nim(dims, bytes ? DT_UINT8 : DT_FLOAT32, 0), nifti_image_free);
  if (!image) fail(path, "cannot create a NIfTI header");
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) image->sto_xyz.m[r][c] = affine[static_cast<size_t>(r * 4 + c)];
  // The qform holds a rotation, voxel sizes and an offset; niftilib derives them from the sform.
  nifti_dmat44_to_quatern(image->sto_xyz, &image->quatern_b, &image->quatern_c, &image->quatern_d, &image->qoffset_x,
                          &image->qoffset_y, &image->qoffset_z, &image->dx, &image->dy, &image->dz, &image->qfac);
  image->pixdim[0] = image->qfac;
  image->pixdim[1] = image->dx;
  image->pixdim[2] = image->dy;
  image->pixdim[3] = image->dz;
  image->qform_code = image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  if (bytes) image->cal_max = 1.0;
  std::strncpy(image->descrip, description, sizeof image->descrip - 1);
  const auto contiguous = voxels.contiguous();
  write_image(path, *image, 1, contiguous.data_ptr(),
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
  NiftiImage header(nifti_copy_nim_info(source.header->image.get()), nifti_image_free);
  if (!header) fail(path, "cannot copy the source's NIfTI header");
  header->datatype = DT_UINT8;
  header->nbyper = 1;
  header->scl_slope = 1.0;
  header->scl_inter = 0.0;
  header->cal_min = 0.0;
  header->cal_max = 1.0;
  header->ndim = header->dim[0] = 3;  // a single volume, as read_nifti_volume requires of its input
  for (int d = 4; d < 8; ++d) header->dim[d] = 1;
  header->nt = header->nu = header->nv = header->nw = 1;
  header->nvox = voxels.numel();
  std::strncpy(header->descrip, "medsad lesion mask", sizeof header->descrip - 1);
  write_image(path, *header, source.header->version, voxels.data_ptr(), static_cast<size_t>(voxels.numel()));
}

}  // namespace medsad::data
