// `medsad serve`: the trained model behind HTTP on loopback (src/serve/server.h). Stops cleanly
// on SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"
#include "model/checkpoint.h"
#include "serve/server.h"

namespace medsad::cli {
namespace {

serve::Server* running = nullptr;

void stop_on_signal(int) {
  if (running) running->stop();  // shuts the listening socket down: run() returns
}

}  // namespace

void setup_serve_command(CLI::App& app, Action& action) {
  struct Options {
    std::string model, weights, bpe, window;
    ComputeOptions compute;
    serve::ServeOptions serve;
    double max_body_mb = 64;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("serve", "serve a trained model over HTTP (POST /v1/predict, GET /healthz, GET /v1/model)");
  cmd->add_option("--model", o->model, "trained checkpoint (best.ckpt)")->required();
  cmd->add_option("--weights", o->weights, "CLIP backbone (default: the one recorded at training)");
  cmd->add_option("--bpe", o->bpe, "CLIP vocabulary (default: the one recorded at training)");
  cmd->add_option("--host", o->serve.host, "address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", o->serve.port, "port (default 8080; 0 picks a free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--max-body-mb", o->max_body_mb, "largest request body, MB (default 64)")->check(CLI::Range(0.001, 4096.0));
  cmd->add_option("--max-pixels", o->serve.max_pixels, "largest decoded image, pixels (default 50000000)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 34));
  cmd->add_option("--max-batch", o->serve.max_batch, "most requests scored together (default 8)")->check(CLI::Range(1, 256));
  cmd->add_option("--http-threads", o->serve.threads, "connection threads (default 8)")->check(CLI::Range(1, 256));
  add_compute_options(cmd, o->compute);
  add_window_option(cmd, o->window);
  cmd->callback([&action, o] {
    action = [o] {
      apply_window_option(o->window);
      check_range("--max-body-mb", o->max_body_mb, 0.001, 4096.0);  // CLI11's range lets NaN through
      o->serve.max_body_bytes = static_cast<size_t>(o->max_body_mb * 1024 * 1024);
      const auto compute = resolve_compute_options(o->compute);
      auto trained = model::load_trained_model(o->model, o->weights, o->bpe, compute.precision, compute.device);
      serve::Server server(std::move(trained), o->model, o->serve);
      const int port = server.bind();
      running = &server;
      std::signal(SIGINT, stop_on_signal);
      std::signal(SIGTERM, stop_on_signal);
      std::fprintf(stderr, "medsad: serving %s on http://%s:%d (POST /v1/predict, GET /healthz, GET /v1/model)\n",
                   o->model.c_str(), o->serve.host.c_str(), port);
      std::fflush(stderr);
      server.run();
      running = nullptr;
      std::fprintf(stderr, "medsad: stopped after %lld predictions\n", static_cast<long long>(server.stats().predictions));
    };
  });
}

}  // namespace medsad::cli
