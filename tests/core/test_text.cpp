// UTF-8 checks and JSON text: a file name in another encoding must reach the output (as U+FFFD)
// rather than abort the run, and an --object that is not text must be caught.
#include <nlohmann/json.hpp>

#include "core/text.h"
#include "test_support.h"

namespace medsad {
namespace {

TEST(Text, IsUtf8TellsValidFromInvalidSequences) {
  for (const std::string valid : {"", "brain MRI", "c\xc3\xa9r\xc3\xa9" "bral", "\xe8\x84\xb3", "\xf0\x9f\xa7\xa0"})
    EXPECT_TRUE(is_utf8(valid)) << valid;
  // a lone continuation byte, a Latin-1 byte, a truncated sequence, an overlong encoding, a surrogate
  for (const std::string invalid : {"\x80", "scan_\xe9.png", "\xc3", "\xc0\xaf", "\xed\xa0\x80"})
    EXPECT_FALSE(is_utf8(invalid)) << invalid;
}

TEST(Text, JsonTextReplacesInvalidBytesInsteadOfThrowing) {
  const nlohmann::json value = {{"path", "scan_\xe9.png"}, {"score", 0.5}};
  EXPECT_THROW((void)value.dump(), nlohmann::json::type_error);  // what json_text exists to avoid
  EXPECT_EQ(json_text(value), "{\"path\":\"scan_\xef\xbf\xbd.png\",\"score\":0.5}");
  EXPECT_EQ(json_text({{"a", 1}}, 1), "{\n \"a\": 1\n}");
  EXPECT_EQ(json_text({{"name", "c\xc3\xa9r\xc3\xa9" "bral"}}), "{\"name\":\"c\xc3\xa9r\xc3\xa9" "bral\"}");
}

}  // namespace
}  // namespace medsad
