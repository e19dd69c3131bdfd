#include "serve/server.h"

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include <httplib.h>
#include <sys/socket.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/text.h"
#include "data/image_io.h"
#include "eval/evaluate.h"
#include "eval/visualize.h"

namespace medsad::serve {
namespace {

struct Job {
  torch::Tensor image;  // [3, H, W] in [0, 1]
  std::promise<eval::ImageResult> result;
};

// A client's mistake, answered with `status` and a JSON error.
struct RequestError {
  int status;
  std::string message;
};

void reply_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(json_text(body), "application/json");
}

// PNG's IHDR gives the size before anything is decoded: refuse a decompression bomb cheaply.
void check_png_size(const std::string& bytes, int64_t max_pixels) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return;
  const auto be32 = [&](size_t at) {
    return (int64_t{static_cast<uint8_t>(bytes[at])} << 24) | (int64_t{static_cast<uint8_t>(bytes[at + 1])} << 16) |
           (int64_t{static_cast<uint8_t>(bytes[at + 2])} << 8) | int64_t{static_cast<uint8_t>(bytes[at + 3])};
  };
  if (be32(16) * be32(20) > max_pixels)
    throw RequestError{413, "image of " + std::to_string(be32(16)) + "x" + std::to_string(be32(20)) +
                                " pixels is over the limit of " + std::to_string(max_pixels)};
}

}  // namespace

struct Server::Impl {
  model::TrainedModel trained;
  std::string checkpoint, checkpoint_sha256;
  ServeOptions options;
  httplib::Server http;
  ServerStats stats;
  int bound_port = -1;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Job>> queue;
  bool stopping = false;
  std::thread scorer;

  // The scoring thread: whatever has queued up is scored together, up to max_batch.
  void score_loop() {
    for (;;) {
      std::vector<std::shared_ptr<Job>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping && queue.empty()) return;
        while (!queue.empty() && static_cast<int64_t>(batch.size()) < options.max_batch) {
          batch.push_back(queue.front());
          queue.pop_front();
        }
      }
      std::vector<torch::Tensor> images;
      for (const auto& job : batch) images.push_back(job->image);
      try {
        auto results = eval::predict_images(*trained.model, trained.preprocess, images, options.max_batch);
        ++stats.batches;
        int64_t largest = stats.largest_batch.load();
        while (static_cast<int64_t>(batch.size()) > largest &&
               !stats.largest_batch.compare_exchange_weak(largest, static_cast<int64_t>(batch.size()))) {
        }
        for (size_t i = 0; i < batch.size(); ++i) batch[i]->result.set_value(std::move(results[i]));
      } catch (...) {
        for (auto& job : batch) job->result.set_exception(std::current_exception());
      }
    }
  }

  // Queues images (a request's frames, together) for the scoring thread.
  std::vector<std::future<eval::ImageResult>> submit(const std::vector<torch::Tensor>& images) {
    std::vector<std::future<eval::ImageResult>> results;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping) throw RequestError{503, "the server is stopping"};
      for (const auto& image : images) {
        auto job = std::make_shared<Job>();
        job->image = image;
        results.push_back(job->result.get_future());
        queue.push_back(std::move(job));
      }
    }
    wake.notify_one();
    return results;
  }

  void predict(const httplib::Request& req, httplib::Response& res) {
    ++stats.requests;
    std::string body = req.body, name = "request body";
    bool want_mask = req.has_param("mask") && req.get_param_value("mask") != "0" && req.get_param_value("mask") != "false";
    if (req.is_multipart_form_data()) {
      if (!req.has_file("image")) throw RequestError{400, "multipart request without an \"image\" field"};
      const auto file = req.get_file_value("image");
      body = file.content;
      name = file.filename.empty() ? "image field" : file.filename;
      if (req.has_file("mask")) {
        const auto flag = req.get_file_value("mask").content;
        want_mask = flag != "0" && flag != "false";
      }
    }
    if (body.empty()) throw RequestError{400, "empty body: send a PNG, JPEG or DICOM file"};
    check_png_size(body, options.max_pixels);
    std::vector<torch::Tensor> frames;
    try {
      frames = decode_image_frames_rgb(body, name);
    } catch (const Error& e) {
      throw RequestError{400, e.what()};
    }
    int64_t pixels = 0;  // over every frame: the limit bounds what one request may hold in memory
    for (const auto& frame : frames) pixels += frame.size(1) * frame.size(2);
    if (pixels > options.max_pixels)
      throw RequestError{413, (frames.size() > 1 ? std::to_string(frames.size()) + " frames of " : "image of ") +
                                  std::to_string(frames[0].size(2)) + "x" + std::to_string(frames[0].size(1)) +
                                  " pixels is over the limit of " + std::to_string(options.max_pixels)};
    auto pending = submit(frames);
    const auto& calibration = trained.info.calibration;
    const auto answer = [&](const eval::ImageResult& result) {
      const auto lesion = result.map >= calibration.pixel_threshold;  // [H, W]
      nlohmann::json out = {{"score", result.score},
                            {"decision", result.score >= calibration.image_threshold ? "abnormal" : "normal"},
                            {"threshold", calibration.image_threshold},
                            {"lesion_fraction", lesion.to(torch::kFloat64).mean().item<double>()}};
      if (want_mask) out["mask"] = base64(encode_png(eval::to_mat_u8(lesion.to(torch::kFloat32))));
      return out;
    };
    nlohmann::json out;
    if (frames.size() == 1) {
      out = answer(pending[0].get());
    } else {  // a multi-frame DICOM file: one answer per frame
      out["frames"] = nlohmann::json::array();
      for (auto& result : pending) out["frames"].push_back(answer(result.get()));
    }
    ++stats.predictions;
    reply_json(res, 200, out);
  }

  nlohmann::json model_info() const {
    const auto& info = trained.info;
    return {{"architecture", info.config.train_backbone ? info.backbone_config : nlohmann::json(info.backbone_path)},
            {"object", info.config.object},
            {"image_size", info.config.image_size},
            {"model", info.config.to_json()},
            {"calibration",
             {{"image_threshold", info.calibration.image_threshold},
              {"pixel_threshold", info.calibration.pixel_threshold},
              {"calibrated", info.calibration.calibrated}}},
            {"checkpoint", checkpoint},
            {"checkpoint_sha256", checkpoint_sha256},
            {"backbone_sha256", info.backbone_sha256},
            {"device", trained.model->device().str()}};
  }

  // Wraps a handler: client mistakes and unexpected failures become JSON errors, never a crash.
  httplib::Server::Handler guarded(void (Impl::*handler)(const httplib::Request&, httplib::Response&)) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        (this->*handler)(req, res);
      } catch (const RequestError& e) {
        ++stats.errors;
        reply_json(res, e.status, {{"error", e.message}});
      } catch (const std::exception& e) {
        ++stats.errors;
        spdlog::error("{} {}: {}", req.method, req.path, e.what());
        reply_json(res, 500, {{"error", "internal error"}});
      }
    };
  }
};

Server::Server(model::TrainedModel model, std::string checkpoint, ServeOptions options) : impl_(new Impl) {
  auto& m = *impl_;
  m.trained = std::move(model);
  m.checkpoint = std::move(checkpoint);
  m.checkpoint_sha256 = sha256_file(m.checkpoint);
  m.options = std::move(options);
  m.http.new_task_queue = [threads = m.options.threads] { return new httplib::ThreadPool(threads); };
  // httplib's default also sets SO_REUSEPORT, with which a second server on a port in use binds
  // too and the kernel splits the requests between the two: keep only SO_REUSEADDR (a restart
  // may rebind while old connections linger), so a port in use is refused.
  m.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  m.http.set_payload_max_length(m.options.max_body_bytes);
  m.http.set_read_timeout(30, 0);
  m.http.Post("/v1/predict", m.guarded(&Impl::predict));
  m.http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200, {{"status", "ok"}});
  });
  m.http.Get("/v1/model", [&m](const httplib::Request&, httplib::Response& res) { reply_json(res, 200, m.model_info()); });
  // A known path asked with the other method: 405 with the method it takes, not "no such endpoint".
  const auto use = [](const std::string& method) {
    return [method](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", method);
      reply_json(res, 405, {{"error", req.method + " " + req.path + ": use " + method}});
    };
  };
  m.http.Get("/v1/predict", use("POST"));
  m.http.Post("/healthz", use("GET"));
  m.http.Post("/v1/model", use("GET"));
  // Statuses that httplib sets itself (404, 413 over the body limit, 400 for bad HTTP) get a JSON body too.
  m.http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    // curl's --data-binary sends form-urlencoded unless told otherwise, and Debian's cpp-httplib
    // caps such bodies at 8 kB whatever --max-body-mb says: say how to send an image instead.
    const bool form = req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
    const std::string what = res.status == 413 && form
                                 ? "a form-urlencoded body is limited to 8 kB: send the image with its own content "
                                   "type (curl -H 'Content-Type: image/png' --data-binary @FILE) or as multipart "
                                   "(curl -F image=@FILE)"
                             : res.status == 413 ? "request body over the size limit"
                             : res.status == 404 ? "no such endpoint (POST /v1/predict, GET /healthz, GET /v1/model)"
                                                 : "bad request";
    res.set_content(json_text({{"error", what}}), "application/json");
  });
  m.http.set_exception_handler([&m](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    ++m.stats.errors;
    reply_json(res, 500, {{"error", "internal error"}});
  });
  m.scorer = std::thread([&m] { m.score_loop(); });
}

Server::~Server() {
  stop();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->scorer.joinable()) impl_->scorer.join();
}

int Server::bind() {
  auto& m = *impl_;
  m.bound_port = m.options.port == 0 ? m.http.bind_to_any_port(m.options.host)
                                     : (m.http.bind_to_port(m.options.host, m.options.port) ? m.options.port : -1);
  if (m.bound_port < 0)
    fail("", "cannot listen on " + m.options.host + ":" + std::to_string(m.options.port) +
                 " (address in use, or not an address of this machine)");
  return m.bound_port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
}

int Server::port() const { return impl_->bound_port; }

const ServerStats& Server::stats() const { return impl_->stats; }

}  // namespace medsad::serve
