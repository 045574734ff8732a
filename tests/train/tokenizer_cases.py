"""Texts and reference ids shared by the export and in-graph tokenizer tests."""

from __future__ import annotations

import numpy as np

from tfsent.data import clean_text
from tfsent.features import encode

MAX_LENGTH = 32


LONG_REVIEW = (
    "The first scene is great. " + "The plot was dull and the acting was bad. " * 12
    + "But the ending was beautiful and I loved it!"
)


# Every kind of input the in-graph tokenizer must treat as the HF tokenizer does.
TEXTS = [
    "A great film.",
    "ThE MoViE wAs GrEaT, really GREAT!!",
    "café naïve résumé CAFÉ NAÏVE",
    "I 😀 loved it 👍🏽! 👨\u200d👩\u200d👧 family film",
    "這部電影很好",
    "映画はとても良かった 한국어 영화",
    "Great acting.<br /><br />Bad plot.<BR>Good end<br/>x<br  />y<br\xa0/>z",
    LONG_REVIEW,
    "the " * 40 + "end",
    "",
    "   ",
    "\t\n \r\n",
    "!!!???... --- (((",
    "don't $100 a+b<c>=d^e`f|g~h _x_ @me #1",
    "¿Qué? «Hola» — “quotes” … ‘single’",
    "10/10, 3.5 stars, 1999, 2nd, 42!",
    "a\x00b c\x07d soft\u00adhyphen zero\u200bwidth x\ufffdy private\ue000use",
    "ﬁne ｆｕｌｌ width Ⅻ ℌ 𝔘𝔫𝔦",
    "Straße ẞ ΣΑΣ ΟΔΟΣ İstanbul",
    "good [SEP] movie [PAD] x[CLS]y [sep] [S\u200bEP]",
    "x" * 150 + " " + "é" * 60 + " " + "e\u0301" * 40,
    "new marks a\u0898b, CJK extension x\U0002b820y x\U0002b920y and \u4e00",
]


def hf_rows(tokenizer, texts, max_length, truncation) -> list[list[int]]:
    """Token ids by the training pipeline: clean_text, HF tokenizer, truncate_ids, [CLS]/[SEP]."""
    encoded = encode(tokenizer, [clean_text(t) for t in texts], max_length, truncation)
    return [row.tolist() for row in encoded.input_ids]


def pad(rows: list[list[int]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)

