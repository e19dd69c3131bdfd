// Tests for clip/tokenizer: ids equal to the public reference (fixture made by OpenAI CLIP's
// tokenizer, and tests/clip/reference_tokenizer.py, a Python port run here), ftfy's fixes as
// equivalences the reference cannot check, and clear errors for bad vocabulary files.
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "clip/tokenizer.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "test_support.h"

using medsad::clip::Tokenizer;

namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::from_bpe_file(medsad::test::bpe_path());
  return tok;
}

// A python3 that has the `regex` module: Debian's first, then the one on PATH.
std::string python_with_regex() {
  for (std::string python : {"/usr/bin/python3", "python3"})
    if (std::system((python + " -c 'import regex' >/dev/null 2>&1").c_str()) == 0) return python;
  return "";
}

std::string run_and_capture(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buffer[4096];
  for (size_t got; (got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, got);
  EXPECT_EQ(pclose(pipe), 0) << command;
  return out;
}

void write_gzip(const std::string& path, const std::string& content) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  gzwrite(file, content.data(), static_cast<unsigned>(content.size()));
  gzclose(file);
}

void expect_file_error(const std::string& path, const std::string& problem_part) {
  try {
    Tokenizer::from_bpe_file(path);
    FAIL() << "expected an error for " << path;
  } catch (const medsad::Error& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(e.problem().find(problem_part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Tokenizer, VocabularyHasClipsSizeAndSpecialTokens) {
  EXPECT_EQ(tokenizer().vocab_size(), 49408);
  EXPECT_EQ(tokenizer().sot_token(), 49406);
  EXPECT_EQ(tokenizer().eot_token(), 49407);
  EXPECT_EQ(tokenizer().token_id("<|endoftext|>"), 49407);
  EXPECT_EQ(tokenizer().token_id("!"), 0);       // first printable byte
  EXPECT_EQ(tokenizer().token_id("!</w>"), 256);
  EXPECT_THROW(tokenizer().token_id("not-a-token"), medsad::Error);
}

TEST(Tokenizer, MatchesTheReferenceFixture) {
  const auto reference = nlohmann::json::parse(medsad::read_file_text(medsad::test::fixture("reference.json")));
  const std::vector<std::string> texts = reference.at("texts").get<std::vector<std::string>>();
  const torch::Tensor expected =
      medsad::read_safetensors(medsad::test::fixture("reference.safetensors")).at("tokens");
  const torch::Tensor tokens = tokenizer().tokenize_batch(texts, 77);
  ASSERT_EQ(tokens.sizes(), expected.sizes());
  for (size_t k = 0; k < texts.size(); ++k)
    EXPECT_TRUE(torch::equal(tokens[k], expected[k])) << "text " << k << ": \"" << texts[k] << "\"\n"
                                                      << tokens[k] << "\nexpected\n" << expected[k];
}

TEST(Tokenizer, MatchesThePythonReferenceOnDiverseTexts) {
  const std::string python = python_with_regex();
  if (python.empty()) GTEST_SKIP() << "no python3 with the `regex` module (Debian: apt install python3-regex)";
  const std::string long_text(300, 'x');
  nlohmann::json request;
  request["vocab"] = medsad::test::bpe_path();
  request["entities"] = true;
  request["texts"] = {
      "a photo of a normal brain MRI.",
      "Héllo wörld, ÉCOLE straße ẞ İstanbul ΩΣ ΟΔΟΣ Ελληνικά 中文字符 日本語のテキスト 한국어 हिन्दी مرحبا",
      "In 2024 the 3.5cm lesion grew to 12,345 mm³ (x² ½ Ⅻ ٣)",
      "!!!??? ... --- *** @@@ ### $$$ %%% ^^^ (([[{{}}]])) a.b,c;d:e",
      "DON'T YOU'RE WE'VE I'M WE'LL HE'D IT'S can't ''s it'ſ 's't",
      "&amp; &lt;b&gt; &quot;q&quot; &#39;s&#39; &#x41;&#66;C &copy;2024 &hellip; &notit; &ampx &amp &notin",
      "&#0; &#128; &#x85; &#x110000; &#xD800; &#1; &#13; &bogus; &euro;5 &#X2603; &#9731 &amp;amp; &micro;m",
      "&#x; &#; &; & &#65abc &#x1F600; &ampamp; &LT &GT; &Amp; &frac12x &#00065; &#xfffe; &#xFDD0; &#127; "
      "&#99999999999; &apos;x&apos; &QUOT; &COPY; &REG;",
      "emoji 😀👍🏽 ❤️ 👨‍👩‍👧 🇫🇷 ☃",
      "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic  ",
      "<|startoftext|>hello<|endoftext|> <|ENDOFTEXT|> <|endoftext|>. <|ſtartoftext|>",
      "x \u0345 y ᾳ µ \u212a \u212b Ꭰ ǰ",
      "covid19 h2o 3d-ct t1-weighted T2W 1st 22nd",
      "pneumonoultramicroscopicsilicovolcanoconiosis aaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!",
      long_text,
      "a very long text that keeps going on and on about the same brain image because the report is long "
      "and detailed and it describes every region of the brain including the frontal lobe the parietal "
      "lobe the temporal lobe and the occipital lobe and the cerebellum and the brainstem as well",
      "",
      "   \t\n ",
  };
  // Whole words, the start/end tokens, a multi-byte character cut in half, and padding.
  const int64_t e_acute_lead = tokenizer().token_id("Ã");  // byte 0xC3 alone
  request["decode"] = {tokenizer().encode("a photo of a brain, 3.5cm! straße 中文"),
                       tokenizer().tokenize("hello world", 8),
                       {tokenizer().token_id("a</w>"), e_acute_lead, tokenizer().token_id("b</w>")},
                       std::vector<int64_t>{}};

  medsad::test::ScratchDir dir;
  medsad::write_file_atomic(dir.file("request.json"), request.dump());
  const std::string script = std::string(MEDSAD_SOURCE_DIR) + "/tests/clip/reference_tokenizer.py";
  const auto reply =
      nlohmann::json::parse(run_and_capture(python + " '" + script + "' < '" + dir.file("request.json") + "'"));

  const auto texts = reply.at("texts").get<std::vector<std::string>>();
  ASSERT_GT(texts.size(), 200u);  // the given texts plus one per HTML 4 entity
  for (size_t k = 0; k < texts.size(); ++k)
    EXPECT_EQ(tokenizer().tokenize(texts[k]), reply.at("tokens")[k].get<std::vector<int64_t>>())
        << "\"" << texts[k] << "\"";
  const auto& decode_inputs = request["decode"];
  for (size_t k = 0; k < decode_inputs.size(); ++k)
    EXPECT_EQ(tokenizer().decode(decode_inputs[k].get<std::vector<int64_t>>()),
              reply.at("decoded")[k].get<std::string>());
}

TEST(Tokenizer, HandVerifiableFacts) {
  const Tokenizer& tok = tokenizer();
  std::vector<int64_t> expected(77, 0);
  expected[0] = 49406;
  expected[1] = tok.token_id("a</w>");
  expected[2] = tok.token_id("photo</w>");
  expected[3] = 49407;
  EXPECT_EQ(tok.tokenize("a photo"), expected);
  EXPECT_EQ(tok.tokenize("  A   PHOTO \n"), expected);  // whitespace and case are cleaned away

  std::string many;
  for (int i = 0; i < 100; ++i) many += "photo ";
  const std::vector<int64_t> cut = tok.tokenize(many);
  ASSERT_EQ(cut.size(), 77u);
  EXPECT_EQ(cut[0], 49406);
  EXPECT_EQ(cut[75], tok.token_id("photo</w>"));
  EXPECT_EQ(cut[76], 49407);
  EXPECT_EQ(tok.tokenize(many, 1), std::vector<int64_t>{49407});
  EXPECT_THROW(tok.tokenize("a", 0), medsad::Error);

  for (const std::string text : {"a photo of a normal brain mri", "x", "pneumonoultramicroscopicsilicovolcano"})
    EXPECT_EQ(tok.decode(tok.encode(text)), text + " ");  // every word ends in "</w>" -> " "
  EXPECT_THROW(tok.decode({49408}), medsad::Error);

  const torch::Tensor batch = tok.tokenize_batch({"a photo", "", "photo"}, 5);
  ASSERT_EQ(batch.sizes(), torch::IntArrayRef({3, 5}));
  EXPECT_EQ(batch.scalar_type(), torch::kInt64);
  EXPECT_EQ(batch[1][0].item<int64_t>(), 49406);
  EXPECT_EQ(batch[1][1].item<int64_t>(), 49407);
  EXPECT_EQ(batch[2][1].item<int64_t>(), tok.token_id("photo</w>"));
}

// What ftfy.fix_text changes, checked as "encodes like the fixed text" (the Python reference has
// no ftfy). Expected forms from ftfy 6's documented behaviour.
TEST(Tokenizer, AppliesFtfyFixes) {
  const Tokenizer& tok = tokenizer();
  const std::vector<std::pair<std::string, std::string>> same = {
      {"ﬁne ﬂow ﬀ ﬃ ﬄ ﬆ", "fine flow ff ffi ffl st"},  // Latin ligatures
      {"ﬅ Ĳssel ǆ ŉ", "ſt IJssel dž 'n"},                // ftfy keeps the long s; ŉ -> ʼn -> 'n
      {"“don’t” ‘x’ „y‟ ‚z‛", "\"don't\" 'x' \"y\" 'z'"},  // curly quotes
      {"ＬＯＵＤ　ＮＯＩＳＥＳ！ ｶﾀｶﾅ", "LOUD NOISES! カタカナ"},  // full and half width
      {"cafe\u0301 A\u030A", "caf\u00e9 \u00c5"},        // NFC
      {"\x1b[31mred\x1b[0m text", "red text"},           // terminal escapes
      {"a\x01" "b\x7f\u200b" "c\ufeff" "d\u206a" "e", "ab\u200bcde"},  // control characters, not U+200B
      {"wait\u0085 \u0080 \u0099", "wait… € ™"},          // C1 controls read as Windows-1252
      {"&amp;amp;amp;lt;b", "<b"},                        // unescaped until stable without '<'
      {"< &amp;amp;amp;lt;", "< & amp ; lt ;"},           // ... only twice once '<' is seen
      {"ok\n< &amp;amp;amp;lt;", "ok < & amp ; lt ;"},
      {"&amp;amp;amp;lt;\n<", "<\n<"},                   // lines before the '<' still are
      {"&EACUTE;COLE &SZLIG; &HELLIP; &AMP;", "ÉCOLE SS … &"},  // upper-cased entity names
      {"&ldquo;q&rdquo; &#8217;", "\"q\" '"},             // entities, then their quotes uncurled
      {"a\xff\xfe b\xe2\x82", "a\uFFFD\uFFFD b\uFFFD"},  // invalid UTF-8 read as U+FFFD
  };
  for (const auto& [raw, fixed] : same) EXPECT_EQ(tok.encode(raw), tok.encode(fixed)) << raw;
}

TEST(Tokenizer, IsSafeToShareAcrossThreads) {
  const Tokenizer& tok = tokenizer();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("scan " + std::to_string(i * 7919) + " word" + std::to_string(i));
  const Tokenizer copy = tok;  // copies share the cache and give the same ids
  std::vector<std::vector<int64_t>> serial;
  for (const auto& t : texts) serial.push_back(copy.encode(t));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < texts.size(); ++i) mismatches[t] += tok.encode(texts[i]) != serial[i];
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Tokenizer, MissingVocabularyIsAClearError) {
  medsad::test::ScratchDir dir;
  expect_file_error(dir.file("nope.txt.gz"), "No such file");
}

TEST(Tokenizer, NonGzipVocabularyIsAClearError) {
  medsad::test::ScratchDir dir;
  std::ofstream(dir.file("plain.txt")) << "#version: 0.2\ni n\n";
  expect_file_error(dir.file("plain.txt"), "not a gzip file");
}

TEST(Tokenizer, TruncatedOrMalformedVocabularyIsAClearError) {
  medsad::test::ScratchDir dir;
  const std::vector<char> bytes = medsad::read_file_bytes(medsad::test::bpe_path());
  medsad::write_file_atomic(dir.file("cut.gz"), bytes.data(), bytes.size() / 2);
  expect_file_error(dir.file("cut.gz"), "gzip");

  write_gzip(dir.file("three.gz"), "#version: 0.2\ni n\nt h e\n");
  expect_file_error(dir.file("three.gz"), "line 3");
  write_gzip(dir.file("header_only.gz"), "#version: 0.2\n");
  expect_file_error(dir.file("header_only.gz"), "no BPE merges");
  write_gzip(dir.file("alien.gz"), "#version: 0.2\ni n\n\xe2\x82\xac x\n");
  expect_file_error(dir.file("alien.gz"), "line 3");
}

TEST(Tokenizer, SmallVocabularyFollowsTheSameConstruction) {
  medsad::test::ScratchDir dir;
  write_gzip(dir.file("small.gz"), "#version: 0.2\ni n</w>\nt h\nth e</w>\n");
  const Tokenizer tok = Tokenizer::from_bpe_file(dir.file("small.gz"));
  EXPECT_EQ(tok.vocab_size(), 512 + 3 + 2);
  EXPECT_EQ(tok.sot_token(), 515);
  EXPECT_EQ(tok.encode("the thin"), (std::vector<int64_t>{tok.token_id("the</w>"), tok.token_id("th"),
                                                          tok.token_id("in</w>")}));
}
