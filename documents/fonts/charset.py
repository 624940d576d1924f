#!/usr/bin/env python3
"""Print the characters the committed font subset covers, one string on stdout.

Source: the GB 2312 character set as Python's own `gb2312` codec decodes it
(rows 0xA1-0xA9: punctuation, full-width forms, kana, Greek, Cyrillic, pinyin,
box drawing; rows 0xB0-0xD7: level-1 hanzi, 3755; rows 0xD8-0xF7: level-2 hanzi, 3008),
plus printable ASCII and a few characters a lease uses that GB 2312 lacks.
"""
import sys

chars = set(chr(c) for c in range(0x20, 0x7F))
rows = list(range(0xA1, 0xAA)) + list(range(0xB0, 0xF8))
for row in rows:
    for col in range(0xA1, 0xFF):
        try:
            chars.add(bytes([row, col]).decode("gb2312"))
        except UnicodeDecodeError:
            pass
# Not in GB 2312 (or decoded by Python to a neighbour: A1AA is U+2015, not the em dash
# U+2014 that text uses): em and en dash, minus, superscript two (m²), square metre sign,
# yen/yuan sign, middle dot, non-breaking space.
chars.update("\u2014\u2013\u2212\u00b2\u33a1\u00a5\u00b7\u00a0")
sys.stdout.write("".join(sorted(chars)))
