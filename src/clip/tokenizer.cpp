// CLIP's byte-level BPE tokenizer (tokenizer.h). Reference: OpenAI CLIP clip/simple_tokenizer.py
// (SimpleTokenizer) and clip/clip.py tokenize(truncate=True); open_clip's tokenizer.py gives the
// same ids.
//
// Text cleaning, as SimpleTokenizer.encode: ftfy.fix_text -> html.unescape twice -> strip ->
// collapse \s+ to ' ' -> str.lower(). ftfy 6.x is reproduced with its default settings (per line,
// repeated until nothing changes): HTML unescape unless a '<' has been seen, C1 controls read as
// Windows-1252, Latin ligatures, full/half width forms, curly quotes, line breaks, terminal
// escapes, control characters, NFC. Not reproduced: ftfy's encoding repair (fix_encoding: mojibake
// such as "CafÃ©" -> "Café", restore_byte_a0, lossy and inconsistent UTF-8), which rests on its
// statistical badness heuristics. Named HTML entities: the 252 of HTML 4 plus &apos; and the
// upper-case AMP/LT/GT/QUOT/COPY/REG (with HTML 5 values, and Python's rule that the 106 legacy
// names also match without ';'), not all 2231 of HTML 5.
// Quotes: U+02BC counts as an apostrophe, as in recent ftfy 6. Character properties come from ICU
// (Unicode 15 with ICU 72); Python's and the regex module's own tables may be newer. The special
// tokens are matched as OpenAI spells them (<|startoftext|>); open_clip's pattern spells them
// <start_of_text>, so only text that contains these markers literally can differ from open_clip.
#include "clip/tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string_view>

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "core/error.h"

namespace medsad::clip {
namespace {

using U32 = std::u32string;

// Text <-> code points. Invalid UTF-8 becomes one U+FFFD per maximal invalid subpart, which is
// what Python's bytes.decode("utf-8", errors="replace") does (SimpleTokenizer.decode relies on it).
U32 utf8_to_u32(std::string_view s) {
  U32 out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) { out += b; ++i; continue; }
    size_t len = 0;
    char32_t cp = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the next byte: no overlongs/surrogates
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, cp = b & 0x0F, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, cp = b & 0x07, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
      out += 0xFFFD, ++i;
      continue;
    }
    size_t k = 1;
    for (; k < len && i + k < s.size(); ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < lo || c > hi) break;
      cp = (cp << 6) | (c & 0x3F);
      lo = 0x80, hi = 0xBF;
    }
    out += k == len ? cp : char32_t{0xFFFD};
    i += k;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) { out += static_cast<char>(c); return; }
  if (c < 0x800) { out += static_cast<char>(0xC0 | (c >> 6)); }
  else {
    if (c < 0x10000) { out += static_cast<char>(0xE0 | (c >> 12)); }
    else { out += static_cast<char>(0xF0 | (c >> 18)); out += static_cast<char>(0x80 | ((c >> 12) & 0x3F)); }
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
  }
  out += static_cast<char>(0x80 | (c & 0x3F));
}

std::string to_utf8(const U32& s) {
  std::string out;
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

U32 from_icu(const icu::UnicodeString& u) {
  U32 out;
  for (int32_t i = 0; i < u.length(); i = u.moveIndex32(i, 1)) out += static_cast<char32_t>(u.char32At(i));
  return out;
}
icu::UnicodeString to_icu(const U32& s) {
  const auto* data = reinterpret_cast<const UChar32*>(s.data());
  return icu::UnicodeString::fromUTF32(data, static_cast<int32_t>(s.size()));
}
U32 normalize(const icu::Normalizer2* (*instance)(UErrorCode&), const U32& s) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = instance(status);
  icu::UnicodeString result = normalizer->normalize(to_icu(s), status);
  TORCH_CHECK(U_SUCCESS(status), "ICU normalisation failed: ", u_errorName(status));
  return from_icu(result);
}

// Python's str.isspace(), which is also what `re`'s \s and str.strip() use.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}
bool is_letter(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0; }
bool is_number(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0; }

// Windows-1252 for bytes 0x80-0x9F, undefined bytes kept (Python's html charref table, ftfy's
// "sloppy-windows-1252").
constexpr char32_t k_cp1252_c1[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

// ftfy's Latin ligatures and legacy digraphs.
constexpr std::pair<char32_t, std::u32string_view> k_ligatures[] = {
    {0x132, U"IJ"}, {0x133, U"ij"}, {0x149, U"\u02BCn"}, {0x1F1, U"DZ"}, {0x1F2, U"Dz"}, {0x1F3, U"dz"},
    {0x1C4, U"D\u017D"}, {0x1C5, U"D\u017E"}, {0x1C6, U"d\u017E"}, {0x1C7, U"LJ"}, {0x1C8, U"Lj"},
    {0x1C9, U"lj"}, {0x1CA, U"NJ"}, {0x1CB, U"Nj"}, {0x1CC, U"nj"}, {0xFB00, U"ff"}, {0xFB01, U"fi"},
    {0xFB02, U"fl"}, {0xFB03, U"ffi"}, {0xFB04, U"ffl"}, {0xFB05, U"\u017Ft"}, {0xFB06, U"st"}};

// HTML 4 named entities: "name=HEX" sets the code point, a bare name takes the previous one + 1.
constexpr const char* k_entity_list =
    "quot=22 amp=26 apos lt=3C gt=3E QUOT=22 AMP=26 LT=3C GT=3E COPY=A9 REG=AE "
    "nbsp=A0 iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 "
    "acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml "
    "Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde "
    "Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig "
    "ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide "
    "oslash ugrave uacute ucirc uuml yacute thorn yuml OElig=152 oelig Scaron=160 scaron Yuml=178 fnof=192 "
    "circ=2C6 tilde=2DC Alpha=391 Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi "
    "Rho Sigma=3A3 Tau Upsilon Phi Chi Psi Omega alpha=3B1 beta gamma delta epsilon zeta eta theta iota kappa "
    "lambda mu nu xi omicron pi rho sigmaf sigma tau upsilon phi chi psi omega thetasym=3D1 upsih piv=3D6 "
    "ensp=2002 emsp thinsp=2009 zwnj=200C zwj lrm rlm ndash=2013 mdash lsquo=2018 rsquo sbquo ldquo=201C rdquo "
    "bdquo dagger=2020 Dagger bull hellip=2026 permil=2030 prime=2032 Prime lsaquo=2039 rsaquo oline=203E "
    "frasl=2044 euro=20AC image=2111 weierp=2118 real=211C trade=2122 alefsym=2135 larr=2190 uarr rarr darr harr "
    "crarr=21B5 lArr=21D0 uArr rArr dArr hArr forall=2200 part=2202 exist empty=2205 nabla=2207 isin notin "
    "ni=220B prod=220F sum=2211 minus lowast=2217 radic=221A prop=221D infin ang=2220 and=2227 or cap cup int "
    "there4=2234 sim=223C cong=2245 asymp=2248 ne=2260 equiv le=2264 ge sub=2282 sup nsub sube=2286 supe "
    "oplus=2295 otimes=2297 perp=22A5 sdot=22C5 lceil=2308 rceil lfloor rfloor lang=27E8 rang loz=25CA "
    "spades=2660 clubs=2663 hearts=2665 diams";

struct Entity {
  char32_t value;
  bool legacy;  // also recognised without the ';' (HTML 5's legacy list)
};

const std::unordered_map<std::string, Entity>& entity_table() {
  static const auto table = [] {
    std::unordered_map<std::string, Entity> t;
    std::string_view rest = k_entity_list;
    char32_t cp = 0;
    while (!rest.empty()) {
      const size_t space = std::min(rest.find(' '), rest.size());
      std::string_view item = rest.substr(0, space);
      rest.remove_prefix(std::min(space + 1, rest.size()));
      const size_t eq = item.find('=');
      cp = eq == std::string_view::npos ? cp + 1 : std::stoul(std::string(item.substr(eq + 1)), nullptr, 16);
      const std::string name(item.substr(0, eq));
      // The legacy names are exactly Latin-1's (U+00A0-U+00FF) plus the ASCII ones except apos.
      t[name] = {cp, (cp >= 0xA0 && cp <= 0xFF) || (cp < 0x80 && name != "apos")};
    }
    return t;
  }();
  return table;
}

const Entity* find_entity(const U32& name, size_t len, bool legacy_only) {
  std::string key;
  for (size_t i = 0; i < len; ++i) {
    if (name[i] >= 0x80) return nullptr;
    key += static_cast<char>(name[i]);
  }
  const auto it = entity_table().find(key);
  return it == entity_table().end() || (legacy_only && !it->second.legacy) ? nullptr : &it->second;
}

// Python's html._replace_charref for a numeric reference (num saturated above 0x10FFFF).
U32 numeric_charref(uint32_t num) {
  if (num == 0) return U"\uFFFD";
  if (num == 0x0D) return U"\r";
  if (num >= 0x80 && num <= 0x9F) return U32(1, k_cp1252_c1[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
      (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
    return U"";
  return U32(1, static_cast<char32_t>(num));
}

// One reference at s[i] == '&' as Python's html.unescape regex
// &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) sees it. Returns false if none matches.
bool unescape_at(const U32& s, size_t i, U32& out, size_t& end) {
  const size_t n = s.size();
  if (i + 1 < n && s[i + 1] == '#') {
    size_t j = i + 2;
    const bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
    j += hex;
    const auto digit = [hex](char32_t c) -> int {
      if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
      const char32_t folded = c | 0x20;
      return hex && folded >= 'a' && folded <= 'f' ? static_cast<int>(folded - 'a' + 10) : -1;
    };
    size_t k = j;
    uint32_t num = 0;
    for (; k < n && digit(s[k]) >= 0; ++k) {
      num = std::min<uint32_t>(num * (hex ? 16 : 10) + static_cast<uint32_t>(digit(s[k])), 0x110000);
    }
    if (k == j) return false;
    end = k + (k < n && s[k] == ';');
    out += numeric_charref(num);
    return true;
  }
  size_t k = i + 1;
  const auto in_name = [](char32_t c) {
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' && c != ';';
  };
  while (k < n && k - i - 1 < 32 && in_name(s[k])) ++k;
  if (k == i + 1) return false;
  const U32 name = s.substr(i + 1, k - i - 1);
  const bool semicolon = k < n && s[k] == ';';
  end = k + semicolon;
  if (const Entity* e = find_entity(name, name.size(), !semicolon)) { out += e->value; return true; }
  // Longest legacy name that prefixes the reference; the rest stays as text ("&notit;" -> "¬it;").
  for (size_t len = semicolon ? name.size() : name.size() - 1; len >= 2; --len) {
    if (const Entity* e = find_entity(name, len, true)) {
      out += e->value;
      out += s.substr(i + 1 + len, end - i - 1 - len);
      return true;
    }
  }
  out += s.substr(i, end - i);
  return true;
}

U32 html_unescape(const U32& s) {
  U32 out;
  for (size_t i = 0, end = 0; i < s.size();) {
    if (s[i] == '&' && unescape_at(s, i, out, end)) { i = end; continue; }
    out += s[i++];
  }
  return out;
}

// ftfy's unescape_html: only "&#?[0-9A-Za-z]{1,24};", HTML 5 names plus upper-cased lower-case
// names (&EACUTE; -> É) that are not entities themselves.
U32 ftfy_unescape(const U32& s) {
  U32 out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '&') { out += s[i++]; continue; }
    const bool hash = i + 1 < s.size() && s[i + 1] == '#';
    const size_t j = i + 1 + hash;
    size_t k = j;
    while (k < s.size() && s[k] < 0x80 && std::isalnum(static_cast<int>(s[k]))) ++k;
    if (k == j || k - j > 24 || k == s.size() || s[k] != ';') { out += s[i++]; continue; }
    const U32 entity = s.substr(i, k + 1 - i);
    const U32 name = s.substr(j, k - j);
    U32 fixed = entity;
    if (hash) {
      const U32 decoded = html_unescape(entity);
      if (decoded.find(';') == U32::npos) fixed = decoded;
    } else if (const Entity* e = find_entity(name, name.size(), false)) {
      fixed = U32(1, e->value);
    } else {
      U32 lower = name;
      for (char32_t& c : lower) c = std::tolower(static_cast<int>(c));
      const Entity* lower_entity = find_entity(lower, lower.size(), false);
      const bool upper = std::none_of(name.begin(), name.end(), [](char32_t c) { return c >= 'a' && c <= 'z'; });
      if (lower_entity && upper && html_unescape(entity) == entity)
        fixed = from_icu(to_icu(U32(1, lower_entity->value)).toUpper(icu::Locale::getRoot()));
    }
    out += fixed;
    i = k + 1;
  }
  return out;
}

// ftfy's per-character fixers, in its order: C1 controls, ligatures, width, quotes.
void fix_char(char32_t c, U32& out) {
  if (c >= 0x80 && c <= 0x9F) c = k_cp1252_c1[c - 0x80];
  const auto* lig = std::find_if(std::begin(k_ligatures), std::end(k_ligatures), [c](const auto& l) {
    return l.first == c;
  });
  const U32 pieces = lig == std::end(k_ligatures) ? U32(1, c) : U32(lig->second);
  for (char32_t p : pieces) {
    U32 wide(1, p == 0x3000 ? U' ' : p);  // NFKC of U+FF01-U+FFEF is their standard-width form
    if (p >= 0xFF01 && p <= 0xFFEF) wide = normalize(icu::Normalizer2::getNFKCInstance, wide);
    for (char32_t w : wide) {
      if (w == 0x02BC || (w >= 0x2018 && w <= 0x201B)) w = '\'';
      else if (w >= 0x201C && w <= 0x201F) w = '"';
      out += w;
    }
  }
}

bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// One pass of ftfy's fix_and_explain loop body (minus fix_encoding).
U32 ftfy_pass(const U32& text, bool unescape) {
  const U32 in = unescape ? ftfy_unescape(text) : text;
  U32 fixed;
  for (char32_t c : in) fix_char(c, fixed);
  U32 lines;  // fix_line_breaks, then remove_terminal_escapes (ESC [ (\d|;)* [A-Za-z]), controls
  for (size_t i = 0; i < fixed.size(); ++i) {
    char32_t c = fixed[i];
    if (c == '\r' && i + 1 < fixed.size() && fixed[i + 1] == '\n') continue;
    if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
    if (c == 0x1B && i + 1 < fixed.size() && fixed[i + 1] == '[') {
      size_t k = i + 2;
      const auto in_escape = [](char32_t e) {
        return e == ';' || u_charType(static_cast<UChar32>(e)) == U_DECIMAL_DIGIT_NUMBER;  // Python's \d
      };
      while (k < fixed.size() && in_escape(fixed[k])) ++k;
      if (k < fixed.size() && fixed[k] < 0x80 && std::isalpha(static_cast<int>(fixed[k]))) {
        i = k;
        continue;
      }
    }
    if (!is_removed_control(c)) lines += c;
  }
  return normalize(icu::Normalizer2::getNFCInstance, lines);
}

// ftfy.fix_text: line by line, each line fixed until stable; HTML unescaping stops for good at the
// first line containing '<' (it may be real HTML).
U32 ftfy_fix_text(const U32& text) {
  U32 out;
  bool unescape = true;
  for (size_t pos = 0; pos < text.size();) {
    const size_t brk = std::min(text.find('\n', pos), text.size() - 1) + 1;
    U32 segment = text.substr(pos, brk - pos);
    if (segment.find('<') != U32::npos) unescape = false;
    for (U32 prev; prev != segment;) prev = segment, segment = ftfy_pass(segment, unescape);
    out += segment;
    pos = brk;
  }
  return out;
}

// basic_clean + whitespace_clean + lower, as SimpleTokenizer.encode applies them.
U32 clean_text(const std::string& utf8_text) {
  const U32 unescaped = html_unescape(html_unescape(ftfy_fix_text(utf8_to_u32(utf8_text))));
  U32 collapsed;
  bool pending_space = false;
  for (char32_t c : unescaped) {
    if (is_space(c)) { pending_space = !collapsed.empty(); continue; }
    if (pending_space) collapsed += ' ';
    pending_space = false;
    collapsed += c;
  }
  return from_icu(to_icu(collapsed).toLower(icu::Locale::getRoot()));
}

// Length of the match of SimpleTokenizer's pattern (regex module, IGNORECASE) at s[i]:
// <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// 0 means no alternative matches (whitespace; also U+0345, which case-folds to a letter and so
// is excluded from the negated class without being a letter itself).
size_t match_length(const U32& s, size_t i) {
  for (std::string_view lit : {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
    // IGNORECASE on lower-cased text: only U+017F (long s) still folds onto a literal, to 's'.
    size_t k = 0;
    while (k < lit.size() && i + k < s.size() &&
           (s[i + k] == static_cast<char32_t>(lit[k]) || (lit[k] == 's' && s[i + k] == 0x17F)))
      ++k;
    if (k == lit.size()) return k;
  }
  if (is_number(s[i])) return 1;
  const auto is_other = [](char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c) && c != 0x345; };
  const bool letters = is_letter(s[i]);
  size_t k = i;
  while (k < s.size() && (letters ? is_letter(s[k]) : is_other(s[k]))) ++k;
  return k - i;
}

uint64_t pair_key(int64_t left, int64_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right);
}

void check_context_length(int64_t context_length) {
  if (context_length < 1) fail("", "context length must be at least 1, got " + std::to_string(context_length));
}

}  // namespace

struct Tokenizer::BpeCache {
  static constexpr size_t k_max_entries = 1 << 17;  // cleared when full; bounds a server's memory
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>> entries;
};

Tokenizer Tokenizer::from_bpe_file(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) fail(path, std::string("cannot open the CLIP BPE vocabulary: ") + std::strerror(errno));
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(file, gzclose);
  if (gzdirect(file)) fail(path, "not a gzip file (expected CLIP's bpe_simple_vocab_16e6.txt.gz)");
  std::string text;
  char buffer[1 << 16];
  int got = 0;
  while ((got = gzread(file, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(got));
  int zerr = Z_OK;
  const char* zmsg = gzerror(file, &zerr);
  if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
    fail(path, std::string("cannot read the gzip data: ") + zmsg);

  std::vector<std::string_view> lines;
  for (std::string_view rest = text; !rest.empty();) {
    const size_t nl = std::min(rest.find('\n'), rest.size());
    lines.push_back(rest.substr(0, nl));
    rest.remove_prefix(std::min(nl + 1, rest.size()));
  }
  // SimpleTokenizer keeps merges[1 : 49152 - 256 - 2 + 1]: line 0 is a "#version" header.
  const size_t n_merges = lines.size() < 2 ? 0 : std::min<size_t>(lines.size() - 1, 49152 - 256 - 2);
  if (n_merges == 0) fail(path, "no BPE merges after the header line");

  Tokenizer tok;
  // bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes get
  // U+0100.. in byte order; the vocabulary lists the printable ones first.
  int32_t byte_of_char[0x100 + 68];
  std::fill(std::begin(byte_of_char), std::end(byte_of_char), -1);
  std::string byte_token[256];
  const auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  std::vector<int> order;
  for (int pass = 0, extra = 0; pass < 2; ++pass)
    for (int b = 0; b < 256; ++b)
      if (printable(b) == (pass == 0)) {
        const char32_t c = pass == 0 ? b : 0x100 + extra++;
        byte_of_char[c] = b;
        append_utf8(byte_token[b], c);
        order.push_back(b);
      }
  const auto add = [&tok](const std::string& token, std::string bytes) {
    tok.token_ids_[token] = static_cast<int64_t>(tok.id_bytes_.size());
    tok.id_bytes_.push_back(std::move(bytes));
  };
  for (int b : order) {
    tok.byte_ids_[b] = static_cast<int32_t>(tok.id_bytes_.size());
    add(byte_token[b], std::string(1, static_cast<char>(b)));
  }
  for (int b : order) add(byte_token[b] + "</w>", std::string(1, static_cast<char>(b)) + "</w>");

  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t line = 1; line <= n_merges; ++line) {
    std::vector<std::string> parts;
    std::string_view rest = lines[line];
    while (!rest.empty()) {
      const size_t start = rest.find_first_not_of(" \t\r\v\f");
      if (start == std::string_view::npos) break;
      const size_t stop = std::min(rest.find_first_of(" \t\r\v\f", start), rest.size());
      parts.emplace_back(rest.substr(start, stop - start));
      rest.remove_prefix(stop);
    }
    const std::string where = "line " + std::to_string(line + 1) + ": ";
    if (parts.size() != 2) fail(path, where + "expected two symbols, got \"" + std::string(lines[line]) + "\"");
    std::string bytes;  // what the merged symbol stands for: each char mapped back to its byte
    for (char32_t c : utf8_to_u32(parts[0] + parts[1])) {
      if (c >= std::size(byte_of_char) || byte_of_char[c] < 0)
        fail(path, where + "a symbol has a character outside CLIP's byte alphabet");
      bytes += static_cast<char>(byte_of_char[c]);
    }
    add(parts[0] + parts[1], std::move(bytes));
    pairs.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  tok.sot_ = static_cast<int64_t>(tok.id_bytes_.size());
  add("<|startoftext|>", "<|startoftext|>");
  tok.eot_ = static_cast<int64_t>(tok.id_bytes_.size());
  add("<|endoftext|>", "<|endoftext|>");

  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [first, second] = pairs[rank];
    const auto left = tok.token_ids_.find(first), right = tok.token_ids_.find(second);
    if (left == tok.token_ids_.end() || right == tok.token_ids_.end())
      fail(path, "line " + std::to_string(rank + 2) + ": a symbol of the merge is not in the vocabulary");
    // Later duplicates win, as in the reference's dict(zip(merges, range(...))).
    tok.merges_[pair_key(left->second, right->second)] = {static_cast<int32_t>(rank),
                                                          static_cast<int32_t>(tok.token_ids_.at(first + second))};
  }
  tok.cache_ = std::make_shared<BpeCache>();
  return tok;
}

std::vector<int32_t> Tokenizer::bpe_uncached(const std::string& piece) const {
  std::vector<int32_t> word;
  for (char b : piece) word.push_back(byte_ids_[static_cast<unsigned char>(b)]);
  word.back() += 256;  // the last symbol carries the end-of-word mark
  std::vector<int32_t> merged;
  while (word.size() > 1) {
    const Merge* best = nullptr;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = merges_.find(pair_key(word[i], word[i + 1]));
      if (it != merges_.end() && (!best || it->second.rank < best->rank)) best = &it->second, best_at = i;
    }
    if (!best) break;
    const int32_t left = word[best_at], right = word[best_at + 1];
    merged.clear();
    for (size_t i = 0; i < word.size();) {  // every occurrence, left to right, non-overlapping
      const bool pair = i + 1 < word.size() && word[i] == left && word[i + 1] == right;
      merged.push_back(pair ? best->merged_id : word[i]);
      i += pair ? 2 : 1;
    }
    word.swap(merged);
  }
  return word;
}

std::vector<int32_t> Tokenizer::bpe(const std::string& piece) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    const auto it = cache_->entries.find(piece);
    if (it != cache_->entries.end()) return it->second;
  }
  std::vector<int32_t> ids = bpe_uncached(piece);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->entries.size() >= BpeCache::k_max_entries) cache_->entries.clear();
  cache_->entries.emplace(piece, ids);
  return ids;
}

Tokenizer Tokenizer::byte_level() {
  Tokenizer tok;
  tok.byte_level_ = true;
  for (int b = 0; b < 256; ++b) tok.id_bytes_.emplace_back(1, static_cast<char>(b));
  tok.sot_ = 256;
  tok.id_bytes_.push_back("<|startoftext|>");
  tok.eot_ = 257;
  tok.id_bytes_.push_back("<|endoftext|>");
  return tok;
}

std::vector<int64_t> Tokenizer::encode(const std::string& utf8_text) const {
  const U32 text = clean_text(utf8_text);
  std::vector<int64_t> ids;
  if (byte_level_) {
    for (unsigned char byte : to_utf8(text)) ids.push_back(byte);
    return ids;
  }
  for (size_t i = 0; i < text.size();) {
    const size_t len = match_length(text, i);
    if (len == 0) { ++i; continue; }
    const std::string piece = to_utf8(text.substr(i, len));
    i += len;
    if (piece == "<|startoftext|>" || piece == "<|endoftext|>") {  // the reference's pre-filled cache
      ids.push_back(piece == "<|startoftext|>" ? sot_ : eot_);
      continue;
    }
    for (int32_t id : bpe(piece)) ids.push_back(id);
  }
  return ids;
}

std::vector<int64_t> Tokenizer::tokenize(const std::string& utf8_text, int64_t context_length) const {
  check_context_length(context_length);
  std::vector<int64_t> ids{sot_};
  for (int64_t id : encode(utf8_text)) ids.push_back(id);
  ids.push_back(eot_);
  if (static_cast<int64_t>(ids.size()) > context_length) {
    ids.resize(static_cast<size_t>(context_length));
    ids.back() = eot_;
  }
  ids.resize(static_cast<size_t>(context_length), 0);
  return ids;
}

torch::Tensor Tokenizer::tokenize_batch(const std::vector<std::string>& texts, int64_t context_length) const {
  check_context_length(context_length);
  const auto count = static_cast<int64_t>(texts.size());
  torch::Tensor tokens = torch::zeros({count, context_length}, torch::kInt64);  // [K, L]
  for (size_t k = 0; k < texts.size(); ++k) {
    const std::vector<int64_t> row = tokenize(texts[k], context_length);
    std::copy(row.begin(), row.end(), tokens.data_ptr<int64_t>() + k * static_cast<size_t>(context_length));
  }
  return tokens;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      fail("", "token id " + std::to_string(id) + " is outside the CLIP vocabulary [0, " +
                   std::to_string(vocab_size()) + ")");
    bytes += id_bytes_[static_cast<size_t>(id)];
  }
  std::string text = to_utf8(utf8_to_u32(bytes));
  if (byte_level_) return text;
  for (size_t at = text.find("</w>"); at != std::string::npos; at = text.find("</w>", at + 1))
    text.replace(at, 4, " ");
  return text;
}

int64_t Tokenizer::token_id(const std::string& bpe_token) const {
  if (byte_level_) fail("", "a byte-level tokenizer has no BPE entries (asked for \"" + bpe_token + "\")");
  const auto it = token_ids_.find(bpe_token);
  if (it == token_ids_.end()) fail("", "\"" + bpe_token + "\" is not in the CLIP vocabulary");
  return it->second;
}

}  // namespace medsad::clip
