// The medsad entry point's exit codes: --help is success, and every command-line syntax error
// (unknown option, missing required option, value out of range) is bad input, exit 1, like the
// errors the commands themselves raise.
#include <cstdlib>

#include "test_support.h"

namespace medsad {
namespace {

TEST(MainExitCodes, HelpIsSuccess) {
  const auto r = test::run_medsad("--help");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("exit codes"), std::string::npos) << r.out;
  EXPECT_EQ(test::run_medsad("train --help").exit_code, 0);
}

TEST(MainExitCodes, CommandLineErrorsAreBadInput) {
  const auto unknown = test::run_medsad("synth --out /tmp/unused --no-such-option");
  EXPECT_EQ(unknown.exit_code, 1) << unknown.err;
  EXPECT_NE(unknown.err.find("--no-such-option"), std::string::npos) << unknown.err;

  const auto missing = test::run_medsad("train --data /nonexistent --out /tmp/unused --weights none");
  EXPECT_EQ(missing.exit_code, 1) << missing.err;
  EXPECT_NE(missing.err.find("--object is required"), std::string::npos) << missing.err;

  const auto range = test::run_medsad("--threads 99999 synth --out /tmp/unused");
  EXPECT_EQ(range.exit_code, 1) << range.err;
  EXPECT_NE(range.err.find("--threads"), std::string::npos) << range.err;

  // Before any data is read, in words about the size (not "not a multiple of the patch size").
  for (const char* size : {"0", "-5", "5000"}) {
    const auto image_size = test::run_medsad(std::string("train --data /nonexistent --object x --weights none ") +
                                             "--out /tmp/unused --image-size " + size);
    EXPECT_EQ(image_size.exit_code, 1) << image_size.err;
    EXPECT_NE(image_size.err.find("--image-size: Value " + std::string(size) + " not in range 1 to 4096"),
              std::string::npos)
        << image_size.err;
  }

  EXPECT_EQ(test::run_medsad("").exit_code, 1);  // no command at all
}

// How idle OpenMP threads wait follows where the run's matrix products go (runtime.h,
// configure_thread_wait): PASSIVE when OpenBLAS's threads compute them in fp32, libgomp's short
// spin when they run in bf16 on the OpenMP threads; a user's own setting wins. `-v` logs the
// policy the process ended up with, before the command fails on its missing files.
TEST(MainThreadWait, FollowsThePrecisionAndRespectsTheUsersSetting) {
  ::unsetenv("OMP_WAIT_POLICY");
  ::unsetenv("GOMP_SPINCOUNT");
  const auto policy = [](const std::string& args) {
    const auto r = test::run_medsad("-v " + args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const auto at = r.err.find("OpenMP wait: ");
    return at == std::string::npos ? std::string("(not logged)") : r.err.substr(at + 13, r.err.find('\n', at) - at - 13);
  };
  const std::string eval = "eval --model /nonexistent.ckpt --data /nonexistent --out /tmp/unused --device cpu";
  EXPECT_EQ(policy(eval + " --precision fp32"), "OMP_WAIT_POLICY=PASSIVE");
  EXPECT_EQ(policy(eval + " --precision bf16"), "default");
  EXPECT_EQ(policy("clip info --weights /nonexistent.pt"), "OMP_WAIT_POLICY=PASSIVE");
  EXPECT_EQ(policy("baseline --data /nonexistent --out /tmp/unused"), "default");
  ::setenv("GOMP_SPINCOUNT", "1000", 1);
  EXPECT_EQ(policy(eval + " --precision fp32"), "GOMP_SPINCOUNT=1000");
  ::unsetenv("GOMP_SPINCOUNT");
  ::setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
  EXPECT_EQ(policy(eval + " --precision fp32"), "OMP_WAIT_POLICY=ACTIVE");
  ::unsetenv("OMP_WAIT_POLICY");
}

}  // namespace
}  // namespace medsad
