// `medsad serve`: the trained model behind HTTP (cpp-httplib), for other systems to call.
//   POST /v1/predict   body: a PNG, JPEG or DICOM file, or multipart/form-data with a file field
//                      "image" (and optionally "mask"); ?mask=1 (or the field) adds the binary
//                      lesion mask as a base64 PNG. -> {score, decision, threshold,
//                      lesion_fraction[, mask]}
//   GET  /healthz      -> {"status": "ok"}
//   GET  /v1/model     -> architecture, object, image size, calibration, checkpoint SHA-256
// Errors are JSON {"error": ...}: 400 for an undecodable body, 413 for a body or an image over
// the limits, 404/405 for other paths, 500 for anything unexpected; the server keeps running.
// Requests are decoded on the connection threads; one scoring thread runs the model on the
// requests that arrive together, up to max_batch at a time.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "model/checkpoint.h"

namespace medsad::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (Server::port tells which)
  size_t max_body_bytes = 64u << 20;
  int64_t max_pixels = 50'000'000;  // of a decoded image
  int64_t max_batch = 8;
  int threads = 8;                  // connection threads
};

struct ServerStats {
  std::atomic<int64_t> requests{0}, predictions{0}, batches{0}, largest_batch{0}, errors{0};
};

class Server {
 public:
  // `model` must be ready to score (load_trained_model). `checkpoint` is its path (for /v1/model).
  Server(model::TrainedModel model, std::string checkpoint, ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket; throws Error if the address cannot be bound. Returns the port.
  int bind();
  // Serves until stop() (call bind first). Blocks.
  void run();
  void stop();
  int port() const;
  const ServerStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace medsad::serve
