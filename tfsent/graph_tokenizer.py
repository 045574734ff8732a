"""BERT tokenization inside the TensorFlow graph, equal to the HF fast tokenizer id for id.

The exported SavedModel takes raw review text, so TF Serving (C++, no Python) must tokenize it
exactly as training did: ``[CLS] + truncate_ids(hf_tokenizer(clean_text(t)).input_ids) + [SEP]``
(``tfsent.features.encode``). This module rebuilds that with TensorFlow core string ops and
tensorflow-text ops only (no ``py_function``), in the style of keras-hub's preprocessors:

>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "great", "film", "!", "loved", "it", "."]
>>> tok = GraphTokenizer(vocab, max_length=8, truncation="head+tail")
>>> tok(tf.constant(["A great film!<br />Loved it."]))["input_ids"].numpy().tolist()
[[2, 4, 5, 7, 8, 9, 10, 3]]

(7 tokens for a budget of 6: head+tail keeps the first 2 and the last 4.) In an export the
tokenizer is rebuilt with :meth:`GraphTokenizer.from_hf` from the run's HF tokenizer, and its
whole :meth:`~GraphTokenizer.get_config` is written to ``assets/export_config.json``.

**Long texts are trimmed first** (:meth:`GraphTokenizer.trim`): HF tokenizes a whole review and
then cuts the ids, which on a 100 MB request costs tens of seconds and gigabytes in a server.
The graph keeps only as many characters at each end as the cut can need, ``128`` per token
(``trim_chars_per_token``), UTF-8 safe, and tokenizes those: the same ids for any text whose
words fit the bound (every real review; see ``trim``), in bounded time and memory for any text.

Why not ``tensorflow_text.FastBertTokenizer`` as is: it differs from the HF tokenizer
(tokenizers 0.22) on these inputs, so its steps are rebuilt here:

- lowercasing: tf-text applies NFKC case folding, HF lowercases character by character and strips
  accents after NFD. Compatibility characters differ: ``ﬁ``, ``ｆｕｌｌ`` (full width),
  ``ℌ``, ``𝔘``, ``Ⅻ``, ``㈱``, ``ǅ``, ``ß``/``ẞ`` (tf-text: ``fi``, ``full``, ``h``, ``u``, ``xii``,
  ``(株)``, ``dz``, ``ss``; HF keeps them, usually as [UNK]); ICU's lowercasing
  (``tf.strings.lower``) also gives a word-final ``ς`` where HF gives ``σ``;
- control characters (Cc, e.g. ``\\x00``, ``\\x07``, ``\\x0c``, ``\\x85``): HF deletes them,
  tf-text turns them into spaces (``a\\x00b`` is one word for HF, two for tf-text); likewise format
  characters (Cf: zero-width space/joiner, soft hyphen) in cased vocabularies;
- ``U+FFFD`` and private-use characters: HF deletes them, tf-text keeps them (-> [UNK]);
- word length: HF turns words over 100 *characters* into [UNK], tf-text words over 100 *bytes*
  (``é`` * 60 in a cased vocabulary);
- special tokens written in the text (``[SEP]``, ``[PAD]``...): HF matches them in the raw text
  and gives their ids, tf-text splits them into ``[``, ``sep``, ``]``;
- Unicode tables: HF's character classes (control, whitespace, accents = Mn, punctuation) come
  from an older Unicode version than RE2's and ICU's (2,400 code points differ, e.g. the Arabic
  marks U+0898-U+089F), and its CJK ranges skip U+2B820-U+2B91F. So the classes used here are
  read off the ``tokenizers`` library itself (:func:`hf_char_classes`), not written as ``\\p{..}``;
- NUL: tf-text's ``regex_split`` ends a string at ``\\x00``, so it becomes U+FFFD (deleted) first;
- invalid UTF-8 (any bytes can arrive over gRPC) becomes U+FFFD, as
  ``bytes.decode(errors="replace")`` would give HF.

Left as is, for code points assigned in Unicode 14-16 only: lowercasing (``tf.strings.lower``)
differs from Rust's on 96 of them (e.g. Vithkuqi U+10570-U+10595) and NFD (``normalize_utf8``)
on 21 (e.g. U+105C9, U+11383). A vocabulary would need those letters for the ids to differ;
with all-MiniLM-L6-v2's, every code point tokenizes as HF (a slow test checks).

What is kept from tensorflow-text: ``FastWordpieceTokenizer`` (greedy longest-match-first
WordPiece, a whole word -> [UNK] when it cannot be split, as HF) on words split here, plus
``regex_split`` and ``normalize_utf8`` (NFD).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tensorflow as tf
import tensorflow_text as tf_text

from tfsent.config import check_model_options
from tfsent.data import BR_PATTERN
from tfsent.errors import fail
from tfsent.features import MODEL_INPUTS, head_size

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Characters kept per token the cut can need (see GraphTokenizer.trim): above HF's 100-character
# word limit, so a word of any length HF tokenizes as a word, with 27 characters of whitespace
# around it, fits. Real reviews need about 6 (IMDB train: at most 5.4 per token over 510 tokens,
# 45 for the first or last token alone).
TRIM_CHARS_PER_TOKEN = 128
# Bytes per character in UTF-8, at most: a byte budget of 4 per character holds that many.
_UTF8_MAX_BYTES = 4


def re2_class(code_points: Iterable[int]) -> str:
    """An RE2 character class (``[\\x{41}-\\x{5A}...]``) of ``code_points``."""
    runs: list[list[int]] = []
    for c in sorted(set(code_points)):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    if not runs:
        return r"[^\x00-\x{10FFFF}]"  # matches nothing
    return "[" + "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in runs
    ) + "]"


@functools.lru_cache(maxsize=1)
def re2_pattern(python_pattern: str) -> str:
    r"""``python_pattern`` for RE2 (``tf.strings.regex_replace``), ``\s`` matching as in Python.

    Python's ``\s`` on str (what ``tfsent.data.clean_text`` runs) is Unicode-aware, RE2's is ASCII.
    """
    spaces = (c for c in range(sys.maxunicode + 1) if chr(c).isspace())
    return python_pattern.replace(r"\s", re2_class(spaces))


@dataclass(frozen=True)
class CharClasses:
    """RE2 character classes for the steps of HF's BERT normalizer and pre-tokenizer."""

    removed: str  # clean_text deletes these (\0, U+FFFD, Cc, Cf, Co but \t \n \r)
    spaces: str  # clean_text turns these into " "
    cjk: str  # handle_chinese_chars puts spaces around these
    marks: str  # strip_accents deletes these after NFD (Mn)
    split: str  # the pre-tokenizer splits on these (whitespace) ...
    punctuation: str  # ... and makes these words of their own


@functools.lru_cache(maxsize=1)
def hf_char_classes() -> CharClasses:
    """Read the classes off the installed ``tokenizers`` (all code points, 3 s).

    Each normalizer step runs alone on every code point, between ``|`` separators that no step
    changes; the pre-tokenizer runs on all code points joined by ``a``, where only punctuation
    comes out as a one-character word and only whitespace vanishes.
    """
    from tokenizers import normalizers, pre_tokenizers

    everything = [*range(0xD800), *range(0xE000, sys.maxunicode + 1)]  # no surrogates
    probes = [c for c in everything if c != ord("|")]
    joined = "|".join(map(chr, probes))

    def step(**flags) -> list[str]:
        options = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False,
                       lowercase=False)
        options.update(flags)
        out = normalizers.BertNormalizer(**options).normalize_str(joined).split("|")
        if len(out) != len(probes):
            raise RuntimeError("probing tokenizers' BertNormalizer failed: separator changed")
        return out

    cleaned = step(clean_text=True)
    padded = step(handle_chinese_chars=True)
    stripped = step(strip_accents=True)
    letters = [c for c in everything if c != ord("a")]
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: list[str] = []
    for start in range(0, len(letters), 10_000):  # one huge string is 4x slower
        chunk = "a".join(map(chr, letters[start : start + 10_000]))
        words += [w for w, _ in pre_tokenizer.pre_tokenize_str(chunk)]
    seen = set("".join(words))
    return CharClasses(
        removed=re2_class(c for c, out in zip(probes, cleaned, strict=True) if out == ""),
        spaces=re2_class(c for c, out in zip(probes, cleaned, strict=True) if out == " "),
        cjk=re2_class(c for c, out in zip(probes, padded, strict=True) if out == f" {chr(c)} "),
        marks=re2_class(c for c, out in zip(probes, stripped, strict=True) if out == ""),
        split=re2_class(c for c in letters if chr(c) not in seen),
        punctuation=re2_class(ord(w) for w in words if len(w) == 1 and w != "a"),
    )


class GraphTokenizer(tf.Module):
    """Raw texts -> ``input_ids`` / ``attention_mask`` / ``token_type_ids`` (int64, padded), or
    the ``model_inputs`` among them that the model takes (DistilBERT: no ``token_type_ids``).

    Each step mirrors the HF tokenizer and ``tfsent.features.encode``: clean ``<br />``, split out
    special tokens written in the text, ``BertNormalizer``, ``BertPreTokenizer``, WordPiece,
    ``truncate_ids``, ``[CLS]``/``[SEP]``, pad with ``[PAD]`` to the longest row of the batch.
    Before all that, :meth:`trim` bounds the work a long text costs.

    The constructor's arguments are its config (keras-hub's habit): :meth:`get_config` returns
    them as plain JSON values and :meth:`from_config` rebuilds an equal tokenizer:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "film", "##s"]
    >>> tok = GraphTokenizer(vocab, max_length=16, truncation="tail")
    >>> config = tok.get_config()
    >>> config["truncation"], config["trim_chars_per_token"], len(config["vocab"])
    ('tail', 128, 7)
    >>> import json
    >>> again = GraphTokenizer.from_config(json.loads(json.dumps(config)))
    >>> again(tf.constant(["Good films"]))["input_ids"].numpy().tolist()
    [[2, 4, 5, 6, 3]]

    A DistilBERT model takes no ``token_type_ids``, so its tokenizer gives none:

    >>> distil = GraphTokenizer(vocab, 16, "tail", model_inputs=["input_ids", "attention_mask"])
    >>> sorted(distil(tf.constant(["Good films"])))
    ['attention_mask', 'input_ids']
    """

    def __init__(
        self,
        vocab: Sequence[str],
        max_length: int,
        truncation: str,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        clean_text: bool = True,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
        suffix_indicator: str = "##",
        max_input_chars_per_word: int = 100,
        trim_chars_per_token: int | None = TRIM_CHARS_PER_TOKEN,
        char_classes: CharClasses | dict[str, str] | None = None,
        model_inputs: Sequence[str] = MODEL_INPUTS,
        name: str | None = None,
    ):
        super().__init__(name=name)
        check_model_options(max_length, truncation)
        if trim_chars_per_token is not None and trim_chars_per_token < 1:
            fail(f"trim_chars_per_token {trim_chars_per_token} keeps no text; use at least 1, or "
                 "None to tokenize whole texts")
        index = {token: i for i, token in enumerate(vocab)}
        missing = [t for t in (unk_token, cls_token, sep_token, pad_token) if t not in index]
        if missing:
            fail(f"the vocabulary lacks {', '.join(missing)}; use a BERT WordPiece vocabulary")
        if "input_ids" not in model_inputs or set(model_inputs) - set(MODEL_INPUTS):
            fail(f"model inputs {list(model_inputs)} are not input_ids and some of "
                 f"{', '.join(MODEL_INPUTS[1:])}")
        self.model_inputs = [name for name in MODEL_INPUTS if name in model_inputs]
        self.vocab = list(vocab)
        self.max_length = int(max_length)
        self.truncation = truncation
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.handle_chinese_chars = bool(handle_chinese_chars)
        self.clean_text = bool(clean_text)
        self.unk_token, self.cls_token = unk_token, cls_token
        self.sep_token, self.pad_token = sep_token, pad_token
        self.special_tokens = list(special_tokens)
        self.suffix_indicator = suffix_indicator
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.trim_chars_per_token = None if trim_chars_per_token is None else int(
            trim_chars_per_token)
        if isinstance(char_classes, dict):
            char_classes = CharClasses(**char_classes)
        self.char_classes = char_classes or hf_char_classes()
        self.cls_id, self.sep_id, self.pad_id = index[cls_token], index[sep_token], index[pad_token]
        self._cls_id, self._sep_id, self._pad_id = (
            tf.constant(i, tf.int64) for i in (self.cls_id, self.sep_id, self.pad_id)
        )
        specials = sorted((t for t in special_tokens if t in index), key=len, reverse=True)
        self._special_tokens = specials
        # Longest first: RE2 takes the first alternative that matches, HF the longest token.
        self._special_pattern = "|".join(_re2_escape(t) for t in specials)
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocab,
            suffix_indicator=suffix_indicator,
            # Words over the limit are replaced by [UNK] beforehand, counting characters as HF
            # does; tf-text counts bytes (up to 4 per character).
            max_bytes_per_word=_UTF8_MAX_BYTES * self.max_input_chars_per_word,
            token_out_type=tf.int64,
            unknown_token=unk_token,
            no_pretokenization=True,
        )

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument (but ``name``), as JSON values: ``from_config`` inverts it."""
        return {
            "vocab": list(self.vocab),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "handle_chinese_chars": self.handle_chinese_chars,
            "clean_text": self.clean_text,
            "unk_token": self.unk_token,
            "cls_token": self.cls_token,
            "sep_token": self.sep_token,
            "pad_token": self.pad_token,
            "special_tokens": list(self.special_tokens),
            "suffix_indicator": self.suffix_indicator,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "trim_chars_per_token": self.trim_chars_per_token,
            # Read off the installed tokenizers library: recorded, so that the same config gives
            # the same tokenizer under another tokenizers version.
            "char_classes": dataclasses.asdict(self.char_classes),
            "model_inputs": list(self.model_inputs),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GraphTokenizer:
        """The tokenizer ``config`` (from :meth:`get_config`) describes."""
        return cls(**config)

    @classmethod
    def from_hf(
        cls,
        tokenizer: PreTrainedTokenizerFast,
        max_length: int,
        truncation: str,
        trim_chars_per_token: int | None = TRIM_CHARS_PER_TOKEN,
        model_inputs: Sequence[str] | None = None,
    ) -> GraphTokenizer:
        """The graph twin of a HF fast WordPiece tokenizer (BERT's, DistilBERT's, ...), with its
        normalizer's settings; its outputs are ``model_inputs``, by default the tokenizer's own
        ``model_input_names``."""
        from tfsent.model import wordpiece_spec

        spec = wordpiece_spec(tokenizer)
        normalizer = spec["normalizer"]
        model = spec["model"]
        vocab = sorted(model["vocab"], key=model["vocab"].get)
        if [model["vocab"][t] for t in vocab] != list(range(len(vocab))):
            fail("the tokenizer's vocabulary ids are not 0..n-1; use a BERT vocab.txt")
        added = [t for t in spec.get("added_tokens", []) if t.get("special")]
        odd = [t["content"] for t in added
               if t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word")]
        if odd:
            fail(f"special token {odd[0]!r} has normalized/lstrip/rstrip/single_word set; "
                 "export supports plain BERT special tokens only")
        return cls(
            vocab,
            max_length=max_length,
            truncation=truncation,
            lowercase=normalizer.get("lowercase", True),
            strip_accents=normalizer.get("strip_accents"),
            handle_chinese_chars=normalizer.get("handle_chinese_chars", True),
            clean_text=normalizer.get("clean_text", True),
            unk_token=model.get("unk_token", "[UNK]"),
            cls_token=tokenizer.cls_token,
            sep_token=tokenizer.sep_token,
            pad_token=tokenizer.pad_token,
            special_tokens=[t["content"] for t in added],
            suffix_indicator=model.get("continuing_subword_prefix", "##"),
            max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
            trim_chars_per_token=trim_chars_per_token,
            model_inputs=(tokenizer.model_input_names if model_inputs is None
                          else model_inputs),
        )

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """HF's ``BertNormalizer`` on a string tensor of any shape."""
        classes = self.char_classes
        if self.clean_text:
            texts = tf.strings.regex_replace(texts, classes.removed, "")
            texts = tf.strings.regex_replace(texts, classes.spaces, " ")
        if self.handle_chinese_chars:
            texts = tf.strings.regex_replace(texts, f"({classes.cjk})", r" \1 ")
        if self.strip_accents:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, classes.marks, "")
        if self.lowercase:
            # HF lowercases each character alone; ICU turns a word-final capital sigma into ς.
            texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def split_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[batch] raw (cleaned) texts -> [batch, words] as HF's normalizer + pre-tokenizer.

        Special tokens written in the text are words of their own, found before normalizing,
        as HF matches them in the raw text.
        """
        if self.clean_text:
            # tf-text's regex_split ends a string at its first NUL; clean_text deletes both.
            texts = tf.strings.regex_replace(texts, r"\x00", "\ufffd")
        if self._special_pattern:
            segments = tf_text.regex_split(texts, self._special_pattern, self._special_pattern)
        else:
            segments = tf.RaggedTensor.from_tensor(tf.expand_dims(texts, -1))
        flat = segments.flat_values
        is_special = tf.zeros_like(flat, tf.bool)
        for token in self._special_tokens:
            is_special |= tf.equal(flat, token)
        plain = tf.where(is_special, tf.constant("", tf.string), self.normalize(flat))
        punctuation = self.char_classes.punctuation
        words = tf_text.regex_split(plain, f"{self.char_classes.split}+|{punctuation}", punctuation)
        # A special segment's row is empty so far: append the token itself as its one word.
        specials = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(flat, is_special), tf.cast(is_special, tf.int64)
        )
        words = tf.concat([words, specials], axis=1)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > \
            self.max_input_chars_per_word
        words = words.with_flat_values(
            tf.where(too_long, tf.constant(self.unk_token), words.flat_values)
        )
        return segments.with_flat_values(words).merge_dims(1, 2)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[batch] texts -> [batch, tokens] int64 WordPiece ids, no special tokens, no cut."""
        # Clients may send any bytes: invalid UTF-8 becomes U+FFFD, as bytes.decode(errors=
        # "replace") would give HF (whose clean_text then deletes it).
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace",
                                             replacement_char=0xFFFD)
        texts = tf.strings.regex_replace(texts, re2_pattern(BR_PATTERN), " ")
        words = self.split_words(texts)
        pieces = self._wordpiece.tokenize(words.flat_values)
        return words.with_flat_values(pieces).merge_dims(1, 2)

    @property
    def kept_tokens(self) -> tuple[int, int]:
        """Tokens the cut keeps from the start and from the end of a long text."""
        budget = self.max_length - 2
        if self.truncation == "head":
            return budget, 0
        if self.truncation == "tail":
            return 0, budget
        return head_size(budget), budget - head_size(budget)

    def trim(self, texts: tf.Tensor) -> tf.Tensor:
        """[batch] raw texts, each cut to ``head + " " + tail`` characters if it is long.

        ``head`` is the first ``C * n_head`` characters and ``tail`` the last ``C * n_tail``,
        where ``n_head`` / ``n_tail`` are :attr:`kept_tokens` and ``C`` is
        ``trim_chars_per_token`` (``None``: no trim). A text no longer than both is unchanged.
        Only the ends are read: the ops cost the same for 1 KB and for 100 MB (no op scans the
        text, not even for its length in characters), and the rest of the pipeline gets at most
        ``C * (max_length - 2)`` characters.

        Why the ids do not change. Call *separators* whitespace and ``<br />`` tags, *words* the
        runs of other characters between them. The cut ``truncate`` makes keeps the first
        ``n_head`` and the last ``n_tail`` tokens, and a word's tokens depend on that word alone
        (normalization, splitting and WordPiece are per character or per word). In the kept
        head, every word that ends before the cut is whole and tokenizes as in the full text,
        and whatever the cut or the join makes of the word it splits (or of a tag, a special
        token, a multibyte character) comes after those words' tokens; likewise at the tail,
        mirrored. If each word, with the separators on either side, spans at most ``C``
        characters, ``C * n`` characters hold at least ``n`` whole words; if each word also keeps
        a character through normalization (not only controls, format characters or stripped
        accents), they give at least ``n`` tokens. So the kept ends start and end with the tokens
        the cut keeps, and ``truncate`` returns the same ids as on the whole text.

        ``C = 128`` exceeds HF's 100-character word limit; real reviews average 4.5 characters
        per token and need at most 6 over a few hundred tokens. Texts outside the bound are
        unusual or adversarial: thousands of spaces or newlines, runs of 200-character words
        (long URLs one after another, unspaced Thai), words of control characters. For them the
        ids are those of the kept ends: the first tokens of the head and the last of the tail.

        The text is cut at character starts (UTF-8 lead bytes), where decoding resynchronizes:
        the kept ends decode (invalid bytes to U+FFFD) as they do within the whole text.
        """
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.trim_chars_per_token is None:
            return texts
        n_head, n_tail = self.kept_tokens
        size = tf.strings.length(texts)  # bytes: no scan
        head = _utf8_head(texts, size, self.trim_chars_per_token * n_head)
        tail = _utf8_tail(texts, size, self.trim_chars_per_token * n_tail)
        # Ends that overlap or touch cover the whole text, which is then short: keep it as is.
        cut = tf.strings.length(head) + tf.strings.length(tail) < size
        # The space ends the head's last word and starts the tail's first: neither can merge
        # with the other into a word of the kept tokens.
        return tf.where(cut, tf.strings.join([head, tail], separator=" "), texts)

    def truncate(self, ids: tf.RaggedTensor) -> tf.RaggedTensor:
        """``tfsent.features.truncate_ids`` on every row, to ``max_length - 2`` tokens."""
        budget = self.max_length - 2
        lengths = tf.expand_dims(ids.row_lengths(), 1)
        positions = tf.ragged.range(ids.row_lengths())
        if self.truncation == "head":
            keep = positions < budget
        elif self.truncation == "tail":
            keep = positions >= lengths - budget
        else:
            head = head_size(budget)
            # Rows within budget keep everything: there the tail alone starts at or before head.
            keep = (positions < head) | (positions >= lengths - (budget - head))
        return tf.ragged.boolean_mask(ids, keep)

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """[batch] texts -> model inputs, padded to the longest row of the batch."""
        texts = tf.convert_to_tensor(texts, tf.string)
        ids = self.truncate(self.tokenize(self.trim(texts)))
        rows = tf.shape(texts, out_type=tf.int64)[:1]
        cls = tf.RaggedTensor.from_tensor(tf.fill(tf.concat([rows, [1]], 0), self._cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill(tf.concat([rows, [1]], 0), self._sep_id))
        ids = tf.concat([cls, ids, sep], axis=1).to_tensor(default_value=self._pad_id)
        # Masked as in training (tfsent.features): by id, so a [PAD] written in a text is too.
        mask = tf.cast(tf.not_equal(ids, self._pad_id), tf.int64)
        features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tf.zeros_like(ids)}
        return {name: features[name] for name in self.model_inputs}


def _utf8_head(texts: tf.Tensor, size: tf.Tensor, chars: int) -> tf.Tensor:
    """The first ``chars`` characters of each text (fewer if it is shorter), read from at most
    ``4 * chars + 4`` bytes, ending before a character start."""
    if chars == 0:
        return tf.zeros_like(texts)
    piece = tf.strings.substr(texts, 0, _UTF8_MAX_BYTES * (chars + 1))
    starts = tf.strings.length(piece, unit="UTF8_CHAR")  # lead bytes: a character each
    # Where the byte cut fell inside the text it may have split the last character: drop it.
    whole = tf.where(tf.strings.length(piece) < size, starts - 1, starts)
    keep = tf.clip_by_value(whole, 0, chars)
    return tf.strings.substr(piece, tf.zeros_like(keep), keep, unit="UTF8_CHAR")


def _utf8_tail(texts: tf.Tensor, size: tf.Tensor, chars: int) -> tf.Tensor:
    """The last ``chars`` characters of each text (fewer if it is shorter), read from at most
    ``4 * chars + 4`` bytes, starting at a character start."""
    if chars == 0:
        return tf.zeros_like(texts)
    width = _UTF8_MAX_BYTES * (chars + 1)
    piece = tf.strings.substr(texts, tf.maximum(size - width, 0), tf.fill(tf.shape(size), width))
    # Counted back from the end, a character starts at a lead byte: continuation bytes before
    # the first one (a character the byte cut split) are left out.
    keep = tf.minimum(tf.strings.length(piece, unit="UTF8_CHAR"), chars)
    return tf.strings.substr(piece, -keep, keep, unit="UTF8_CHAR")


def _re2_escape(text: str) -> str:
    # As RE2::QuoteMeta: escape ASCII other than [A-Za-z0-9_], pass UTF-8 through.
    return "".join(f"\\{c}" if c.isascii() and not (c.isalnum() or c == "_") else c
                   for c in text)
