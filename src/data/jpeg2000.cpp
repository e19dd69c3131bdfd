#include "data/jpeg2000.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include <openjpeg.h>

#include "core/error.h"

namespace medsad::data {
namespace {

// OpenJPEG reads through callbacks; this is the in-memory source they read from.
struct Source {
  const unsigned char* data;
  size_t size;
  size_t at = 0;
};

OPJ_SIZE_T read_source(void* out, OPJ_SIZE_T count, void* user) {
  auto* s = static_cast<Source*>(user);
  const size_t n = std::min<size_t>(count, s->size - s->at);
  if (n == 0) return static_cast<OPJ_SIZE_T>(-1);  // end of stream
  std::memcpy(out, s->data + s->at, n);
  s->at += n;
  return n;
}

OPJ_OFF_T skip_source(OPJ_OFF_T count, void* user) {
  auto* s = static_cast<Source*>(user);
  if (count < 0) return -1;
  const size_t n = std::min<size_t>(static_cast<size_t>(count), s->size - s->at);
  s->at += n;
  return static_cast<OPJ_OFF_T>(n);
}

OPJ_BOOL seek_source(OPJ_OFF_T to, void* user) {
  auto* s = static_cast<Source*>(user);
  if (to < 0 || static_cast<size_t>(to) > s->size) return OPJ_FALSE;
  s->at = static_cast<size_t>(to);
  return OPJ_TRUE;
}

// OpenJPEG's first error message, kept for ours instead of going to stderr.
void keep_first_error(const char* message, void* user) {
  auto* kept = static_cast<std::string*>(user);
  if (kept->empty() && message) {
    *kept = message;
    while (!kept->empty() && (kept->back() == '\n' || kept->back() == ' ')) kept->pop_back();
  }
}
void ignore_message(const char*, void*) {}

struct CodecDeleter {
  void operator()(opj_codec_t* c) const { opj_destroy_codec(c); }
};
struct StreamDeleter {
  void operator()(opj_stream_t* s) const { opj_stream_destroy(s); }
};
struct ImageDeleter {
  void operator()(opj_image_t* i) const { opj_image_destroy(i); }
};

}  // namespace

Jpeg2000Image decode_jpeg2000(const std::string& bytes, const std::string& name) {
  static const unsigned char kJp2Signature[12] = {0, 0, 0, 0x0c, 'j', 'P', ' ', ' ', 0x0d, 0x0a, 0x87, 0x0a};
  const bool jp2 = bytes.size() >= 12 && std::memcmp(bytes.data(), kJp2Signature, 12) == 0;
  if (!jp2 && (bytes.size() < 4 || static_cast<unsigned char>(bytes[0]) != 0xFF ||
               static_cast<unsigned char>(bytes[1]) != 0x4F))
    fail(name, "JPEG 2000 pixel data without a codestream (no FF 4F start marker)");

  std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K));
  std::string error;
  opj_set_error_handler(codec.get(), keep_first_error, &error);
  opj_set_warning_handler(codec.get(), ignore_message, nullptr);
  opj_set_info_handler(codec.get(), ignore_message, nullptr);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  if (!opj_setup_decoder(codec.get(), &parameters)) fail(name, "cannot set up the JPEG 2000 decoder");

  Source source{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()};
  std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  opj_stream_set_user_data(stream.get(), &source, nullptr);
  opj_stream_set_user_data_length(stream.get(), bytes.size());
  opj_stream_set_read_function(stream.get(), read_source);
  opj_stream_set_skip_function(stream.get(), skip_source);
  opj_stream_set_seek_function(stream.get(), seek_source);

  opj_image_t* raw = nullptr;
  const bool header_ok = opj_read_header(stream.get(), codec.get(), &raw);
  std::unique_ptr<opj_image_t, ImageDeleter> image(raw);
  const auto broken = [&](const std::string& what) {
    fail(name, "corrupt or truncated JPEG 2000 pixel data (" + (error.empty() ? what : error) + ")");
  };
  if (!header_ok || !image) broken("unreadable header");
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get()))
    broken("decoding failed");

  Jpeg2000Image out;
  out.components = static_cast<int>(image->numcomps);
  if (out.components < 1 || out.components > 4)
    fail(name, "JPEG 2000 image with " + std::to_string(out.components) + " components (expected 1 to 4)");
  const opj_image_comp_t& first = image->comps[0];
  out.width = static_cast<int>(first.w);
  out.height = static_cast<int>(first.h);
  out.is_signed = first.sgnd != 0;
  for (int c = 0; c < out.components; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    if (comp.w != first.w || comp.h != first.h || comp.dx != 1 || comp.dy != 1 || !comp.data)
      fail(name, "JPEG 2000 image with subsampled or missing components, which DICOM does not use");
    if ((comp.sgnd != 0) != out.is_signed) fail(name, "JPEG 2000 image mixing signed and unsigned components");
    out.precision = std::max(out.precision, static_cast<int>(comp.prec));
  }
  if (out.width < 1 || out.height < 1) fail(name, "JPEG 2000 image of zero size");
  const size_t pixels = static_cast<size_t>(out.width) * static_cast<size_t>(out.height);
  out.samples.resize(pixels * static_cast<size_t>(out.components));
  for (int c = 0; c < out.components; ++c) {
    const OPJ_INT32* data = image->comps[c].data;
    for (size_t i = 0; i < pixels; ++i) out.samples[i * out.components + c] = data[i];
  }
  return out;
}

}  // namespace medsad::data
