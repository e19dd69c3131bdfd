// CLIP's byte-level BPE tokenizer: text -> the int64 token ids the CLIP text tower embeds.
// Matches OpenAI CLIP clip/simple_tokenizer.py (SimpleTokenizer) and clip.tokenize(truncate=True),
// which open_clip's tokenizer.py reproduces with the same vocabulary and ids: ftfy + HTML
// unescape + whitespace clean + lower-case, the regex pre-tokeniser, byte->unicode mapping, BPE
// over bpe_simple_vocab_16e6.txt.gz. ftfy's mojibake repair is not reproduced (see tokenizer.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

namespace medsad::clip {

class Tokenizer {
 public:
  // Loads CLIP's bpe_simple_vocab_16e6.txt.gz (gzip, read with zlib). Throws medsad::Error(path, ...)
  // if the file is missing, not gzip, truncated or not a BPE merges list.
  static Tokenizer from_bpe_file(const std::string& path);

  // For backbones trained from scratch without CLIP's vocabulary: the same text cleaning, then
  // one id per UTF-8 byte (0..255), start 256, end 257; vocab_size() 258.
  static Tokenizer byte_level();
  bool is_byte_level() const { return byte_level_; }

  // BPE ids of `utf8_text` after CLIP's text cleaning, without start/end tokens.
  // Invalid UTF-8 bytes are read as U+FFFD.
  std::vector<int64_t> encode(const std::string& utf8_text) const;

  // [SOT] + encode(text) + [EOT], zero-padded to context_length; a longer sequence is cut to
  // context_length with EOT kept as its last token (open_clip / clip.tokenize(truncate=True)).
  std::vector<int64_t> tokenize(const std::string& utf8_text, int64_t context_length = 77) const;

  // tokenize() of each text: [K, context_length] int64 on CPU.
  torch::Tensor tokenize_batch(const std::vector<std::string>& texts, int64_t context_length = 77) const;

  // Inverse of encode as SimpleTokenizer.decode: bytes of each token, "</w>" -> " ", invalid
  // UTF-8 replaced by U+FFFD. Throws medsad::Error for an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t sot_token() const { return sot_; }  // <|startoftext|>, 49406 for the real vocab
  int64_t eot_token() const { return eot_; }  // <|endoftext|>, 49407
  int64_t vocab_size() const { return static_cast<int64_t>(id_bytes_.size()); }  // 49408

  // Id of a vocabulary entry written in the byte-encoder alphabet, e.g. "photo</w>".
  // Throws medsad::Error if there is no such entry.
  int64_t token_id(const std::string& bpe_token) const;

 private:
  struct BpeCache;
  struct Merge {
    int32_t rank;       // line order in the merges file; lower merges first
    int32_t merged_id;  // id of the concatenated symbol
  };

  Tokenizer() = default;
  // BPE of one pre-tokenised piece given as raw UTF-8 bytes; cached.
  std::vector<int32_t> bpe(const std::string& piece) const;
  std::vector<int32_t> bpe_uncached(const std::string& piece) const;

  std::vector<std::string> id_bytes_;  // raw bytes each id stands for ("</w>" kept), for decode
  std::unordered_map<std::string, int64_t> token_ids_;  // entry in byte-encoder alphabet -> id
  std::unordered_map<uint64_t, Merge> merges_;          // (left id << 32 | right id) -> merge
  int32_t byte_ids_[256] = {};  // id of the one-byte symbol; + 256 gives the "</w>" variant
  int64_t sot_ = 0;
  int64_t eot_ = 0;
  bool byte_level_ = false;
  std::shared_ptr<BpeCache> cache_;  // shared by copies; guarded by its own mutex
};

}  // namespace medsad::clip
