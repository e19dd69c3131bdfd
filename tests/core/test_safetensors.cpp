#include <fstream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "test_support.h"

using namespace medsad;

TEST(Safetensors, RoundTripKeepsDtypeShapeAndValues) {
  test::ScratchDir dir;
  TensorMap in;
  in["a.weight"] = torch::randn({3, 5});
  in["b"] = torch::arange(7, torch::kInt64);
  in["half"] = torch::randn({2, 2}).to(torch::kFloat16);
  write_safetensors(dir.file("x.safetensors"), in, {{"format", "pt"}});
  const TensorMap out = read_safetensors(dir.file("x.safetensors"));
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [k, v] : in) {
    ASSERT_EQ(out.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(out.at(k), v)) << k;
  }
  EXPECT_EQ(read_safetensors_metadata(dir.file("x.safetensors")).at("format"), "pt");
}

TEST(Safetensors, ReadsTheFixtureWrittenByTheReferenceLibrary) {
  const TensorMap ref = read_safetensors(test::fixture("reference.safetensors"));
  ASSERT_EQ(ref.at("tokens").sizes(), torch::IntArrayRef({10, 77}));
  EXPECT_EQ(ref.at("tokens").scalar_type(), torch::kInt64);
  EXPECT_EQ(ref.at("tokens")[0][0].item<int64_t>(), 49406);  // <|startoftext|>
}

TEST(Safetensors, TruncatedFileIsAClearError) {
  test::ScratchDir dir;
  write_safetensors(dir.file("x.safetensors"), {{"w", torch::randn({64, 64})}});
  std::filesystem::resize_file(dir.file("x.safetensors"), 1000);
  try {
    read_safetensors(dir.file("x.safetensors"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), dir.file("x.safetensors"));
    EXPECT_NE(e.problem().find("truncated"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, GarbageHeaderIsAClearError) {
  test::ScratchDir dir;
  std::ofstream(dir.file("bad.safetensors")) << std::string("\x10\0\0\0\0\0\0\0{not json at all", 24);
  EXPECT_THROW(read_safetensors(dir.file("bad.safetensors")), Error);
}

TEST(Safetensors, OtherFormatsAreNamedNotCalledTruncated) {
  // A PyTorch .pt (a ZIP archive) or any other file read where a safetensors file belongs: its
  // first 8 bytes read as an absurd header length, which is no reason to call it truncated.
  test::ScratchDir dir;
  const auto problem = [&](const std::string& bytes) {
    std::ofstream(dir.file("f"), std::ios::binary) << bytes;
    try {
      (void)read_safetensors(dir.file("f"));
    } catch (const Error& e) {
      return e.problem();
    }
    return std::string("read");
  };
  EXPECT_EQ(problem(read_file_text(test::fixture("openai_jit.pt"))),
            "not a safetensors file (a ZIP archive, as PyTorch .pt / TorchScript files are)");
  EXPECT_EQ(problem(std::string("\x80\x02}q\0(X\x04\0\0\0", 12)), "not a safetensors file (a Python pickle, as old "
                                                                   "PyTorch .pt files are)");
  EXPECT_EQ(problem("garbage\n"), "not a safetensors file");
  EXPECT_EQ(problem("a text file that is long enough"), "not a safetensors file");
  EXPECT_EQ(problem(std::string("\x40\0\0\0\0\0\0\0{\"w\":", 13)).rfind("truncated safetensors file", 0), 0u);
}
