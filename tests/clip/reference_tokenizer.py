#!/usr/bin/env python3
"""Independent Python reference for tests/clip/test_tokenizer.cpp.

A port of OpenAI CLIP's clip/simple_tokenizer.py (SimpleTokenizer) and clip.tokenize(truncate=True)
with the `regex` module and html.unescape, minus ftfy (not installed here): test texts that ftfy
would change are checked in C++ by equivalences instead.

stdin:  {"vocab": PATH, "texts": [str], "decode": [[int]], "context_length": 77, "entities": bool}
stdout: {"texts": [str], "tokens": [[int]] (SOT + ids + EOT, cut to context_length keeping EOT,
         zero-padded), "decoded": [str]}
With "entities", one text per HTML 4 named entity ("x&name;y") is appended to the texts.
"""
import gzip
import html
import html.entities
import json
import re
import sys

import regex


def byte_alphabet():
    """Byte -> printable character, printable Latin-1 bytes first (their order is the vocab order)."""
    kept = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b]
    rest = [b for b in range(256) if b not in kept]
    table = {b: chr(b) for b in kept}
    table.update({b: chr(0x100 + n) for n, b in enumerate(rest)})
    return table


class Reference:
    def __init__(self, vocab_path):
        lines = gzip.open(vocab_path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
        self.byte_to_char = byte_alphabet()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}
        base = list(self.byte_to_char.values())
        vocab = base + [c + "</w>" for c in base] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.tokens = dict(enumerate(vocab))
        self.rank = {m: r for r, m in enumerate(merges)}
        self.specials = {"<|startoftext|>", "<|endoftext|>"}
        self.pattern = regex.compile(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
            regex.IGNORECASE)

    def bpe(self, piece):
        if piece in self.specials:
            return [piece]
        symbols = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(symbols) > 1:
            ranked = [(self.rank.get(p, float("inf")), p) for p in zip(symbols, symbols[1:])]
            rank, pair = min(ranked)
            if rank == float("inf"):
                break
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            symbols = out
        return symbols

    def encode(self, text):
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for piece in self.pattern.findall(text):
            chars = "".join(self.byte_to_char[b] for b in piece.encode("utf-8"))
            ids += [self.ids[s] for s in self.bpe(chars)]
        return ids

    def tokenize(self, text, context_length):
        ids = [self.ids["<|startoftext|>"]] + self.encode(text) + [self.ids["<|endoftext|>"]]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = self.ids["<|endoftext|>"]
        return ids + [0] * (context_length - len(ids))

    def decode(self, ids):
        chars = "".join(self.tokens[i] for i in ids)
        raw = bytes(self.char_to_byte[c] for c in chars)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")


def main():
    request = json.load(sys.stdin)
    ref = Reference(request["vocab"])
    context_length = request.get("context_length", 77)
    texts = list(request.get("texts", []))
    if request.get("entities"):
        # Curly quotes are left out: ftfy, which this reference lacks, straightens them.
        texts += [f"x&{name};y" for name, cp in sorted(html.entities.name2codepoint.items())
                  if not 0x2018 <= cp <= 0x201F]
    json.dump({"texts": texts,
               "tokens": [ref.tokenize(t, context_length) for t in texts],
               "decoded": [ref.decode(ids) for ids in request.get("decode", [])]}, sys.stdout)


if __name__ == "__main__":
    main()
