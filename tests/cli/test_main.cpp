// The medsad entry point's exit codes: --help is success, and every command-line syntax error
// (unknown option, missing required option, value out of range) is bad input, exit 1, like the
// errors the commands themselves raise.
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

  EXPECT_EQ(test::run_medsad("").exit_code, 1);  // no command at all
}

}  // namespace
}  // namespace medsad
