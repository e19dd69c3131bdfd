// A lossless JPEG 2000 encoder for the tests (OpenJPEG, reversible 5/3 wavelet): medsad only
// decodes, and no JPEG 2000 DICOM file with signed samples or several frames is at hand.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <openjpeg.h>

namespace medsad::test {

// `samples` interleaved [h][w][components]; returns a raw codestream (FF 4F FF 51 ...).
inline std::string encode_jpeg2000_lossless(const std::vector<int32_t>& samples, int width, int height,
                                            int components, int precision, bool is_signed) {
  struct Sink {
    std::string bytes;
    size_t at = 0;
  } sink;
  std::vector<opj_image_cmptparm_t> parts(components);
  for (auto& p : parts) {
    std::memset(&p, 0, sizeof p);
    p.dx = p.dy = 1;
    p.w = static_cast<OPJ_UINT32>(width);
    p.h = static_cast<OPJ_UINT32>(height);
    p.prec = static_cast<OPJ_UINT32>(precision);
    p.sgnd = is_signed ? 1 : 0;
  }
  opj_image_t* image = opj_image_create(static_cast<OPJ_UINT32>(components), parts.data(),
                                        components == 1 ? OPJ_CLRSPC_GRAY : OPJ_CLRSPC_SRGB);
  image->x0 = image->y0 = 0;
  image->x1 = static_cast<OPJ_UINT32>(width);
  image->y1 = static_cast<OPJ_UINT32>(height);
  for (int c = 0; c < components; ++c)
    for (size_t i = 0; i < static_cast<size_t>(width) * height; ++i)
      image->comps[c].data[i] = samples[i * components + c];
  opj_cparameters_t parameters;
  opj_set_default_encoder_parameters(&parameters);
  parameters.tcp_numlayers = 1;
  parameters.tcp_rates[0] = 0;  // no rate limit: with the reversible wavelet, lossless
  parameters.cp_disto_alloc = 1;
  // Each of the wavelet's levels halves the image: no more than its smaller side allows.
  parameters.numresolution = 1;
  while (parameters.numresolution < 6 && (1 << parameters.numresolution) <= std::min(width, height))
    ++parameters.numresolution;
  parameters.tcp_mct = components == 3 ? 1 : 0;  // the reversible colour transform (DICOM's YBR_RCT)
  opj_codec_t* codec = opj_create_compress(OPJ_CODEC_J2K);
  opj_setup_encoder(codec, &parameters, image);
  opj_stream_t* stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_FALSE);
  opj_stream_set_user_data(stream, &sink, nullptr);
  opj_stream_set_write_function(stream, [](void* data, OPJ_SIZE_T n, void* user) -> OPJ_SIZE_T {
    auto* s = static_cast<Sink*>(user);
    if (s->bytes.size() < s->at + n) s->bytes.resize(s->at + n);
    std::memcpy(&s->bytes[s->at], data, n);
    s->at += n;
    return n;
  });
  opj_stream_set_skip_function(stream, [](OPJ_OFF_T n, void* user) -> OPJ_OFF_T {
    auto* s = static_cast<Sink*>(user);
    s->at += static_cast<size_t>(n);
    s->bytes.resize(std::max(s->bytes.size(), s->at));
    return n;
  });
  opj_stream_set_seek_function(stream, [](OPJ_OFF_T to, void* user) -> OPJ_BOOL {
    static_cast<Sink*>(user)->at = static_cast<size_t>(to);
    return OPJ_TRUE;
  });
  const bool ok =
      opj_start_compress(codec, image, stream) && opj_encode(codec, stream) && opj_end_compress(codec, stream);
  opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  opj_image_destroy(image);
  return ok ? sink.bytes : std::string();
}

}  // namespace medsad::test
