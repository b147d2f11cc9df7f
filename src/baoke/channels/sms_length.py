"""How many billed segments a domestic (mainland China) SMS takes.

The rule (Aliyun 短信发送规则 https://help.aliyun.com/document_detail/44335.htm, Tencent
https://tencentcloud.com/document/product/382/34671, Huawei
https://support.huaweicloud.com/smn_faq/smn_faq_0009.html; see CHANNELS.md §3):

- the length is the whole text the handset receives: the signature *with* its 【】 brackets, the
  rendered template and any text the platform appends (Aliyun's "回T退订");
- every Chinese character, letter, digit, punctuation mark (full- or half-width) and space
  counts 1;
- up to 70 characters is one segment; a longer text is a long SMS split into segments of 67
  (the other 3 carry the concatenation header), so 160 characters are 67 + 67 + 26 = 3.

Characters outside the Basic Multilingual Plane (most emoji, rare CJK extensions) travel as a
UTF-16 surrogate pair in UCS-2, so they count 2 here: the safe side of the bill. Carriers and
the platforms often refuse emoji in templates anyway.
"""

from __future__ import annotations

__all__ = ["LONG_SEGMENT", "MAX_LENGTH", "SINGLE_SEGMENT", "length", "segments"]

SINGLE_SEGMENT = 70
"""The most characters one (not concatenated) domestic SMS holds."""
LONG_SEGMENT = 67
"""Characters per segment of a long (concatenated) SMS."""
MAX_LENGTH = 500
"""Aliyun's (and Huawei's) limit on signature + content of one long SMS."""


def length(text: str) -> int:
    """The counted length of ``text``: 1 per character, 2 per character beyond U+FFFF."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def segments(text: str) -> int:
    """The billed segments of ``text`` as received (signature and suffix included).

    ``≤ 70`` counted characters is 1 segment, more is ``ceil(n / 67)``.
    """
    n = length(text)
    if n <= SINGLE_SEGMENT:
        return 1
    return -(-n // LONG_SEGMENT)
