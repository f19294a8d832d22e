"""A fitted TF-IDF vectorizer's `transform`, the same matrix at a fraction of the cost.

scikit-learn's `CountVectorizer.transform` is pure Python per n-gram: for a `char_wb` analyzer
it slices every 2..5-gram of every word and looks each up in the vocabulary, for every message,
even though a word's n-grams are always the same. Profiled under load, the two vectorizers of
the candidate were ~30 % of a serving worker's CPU (the char_wb one two thirds of that).

`CachedVectorizer(fitted)` reproduces the fitted vectorizer's analysis exactly and
- `char_wb`: keeps, per word, the vocabulary indices of its n-grams (a bounded cache), since
  char_wb n-grams never cross a word boundary: a text's n-grams are its words' n-grams;
- `word`: tokenizes with the fitted token pattern, builds the n-grams and looks them up with
  C-level `map`;
then counts with numpy, builds the CSR matrix sklearn would (sorted indices, integer counts)
and applies the fitted TF-IDF step as `TfidfTransformer.transform` does (log, idf, then
sklearn's own in-place row normalisation), without its per-call input validation: the same
floating-point operations in the same order, so the values are sklearn's to the last bit.

Hand-written because no library offers a faster exact `transform` for a fitted sklearn
vectorizer (HashingVectorizer changes the features; a retrained model would not be the
registered one). `supports(vectorizer)` names the configurations reproduced; anything else
(custom analyzer or tokenizer, stop words, accent stripping, non-string input) keeps
sklearn's transform. tests/unit/test_fast_text.py checks equality on adversarial text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.utils.sparsefuncs_fast import (
    inplace_csr_row_normalize_l1,
    inplace_csr_row_normalize_l2,
)

# Words whose char_wb indices are kept; beyond it the cache starts afresh (bounded memory:
# ~50k words of live traffic is a few tens of MB).
WORD_CACHE_MAX = 50_000

_EMPTY: tuple[int, ...] = ()


def supports(vectorizer: Any) -> bool:
    """True when `CachedVectorizer` reproduces this fitted vectorizer's transform exactly."""
    if not isinstance(vectorizer, CountVectorizer) or not hasattr(vectorizer, "vocabulary_"):
        return False
    v = vectorizer
    if v.input != "content" or v.tokenizer is not None or callable(v.analyzer):
        return False
    if isinstance(v, TfidfVectorizer) and v.norm not in ("l1", "l2", None):
        return False
    if v.analyzer == "char_wb":
        # a custom preprocessor replaces lower-casing and accent stripping (sklearn's rule)
        return v.preprocessor is not None or v.strip_accents is None
    if v.analyzer == "word":
        return (
            v.preprocessor is None
            and v.strip_accents is None
            and v.stop_words is None
            and re.compile(v.token_pattern).groups == 0
        )
    return False


class CachedVectorizer:
    """Drop-in `transform` for a fitted (Tfidf|Count)Vectorizer that `supports` accepts;
    every other attribute is the fitted vectorizer's."""

    def __init__(self, fitted: CountVectorizer, cache_max: int = WORD_CACHE_MAX) -> None:
        if not supports(fitted):
            raise ValueError(f"unsupported vectorizer configuration: {fitted!r}")
        self.fitted = fitted
        self.cache_max = cache_max
        self._vocabulary: dict[str, int] = fitted.vocabulary_
        self._n_features = len(self._vocabulary)
        self._min_n, self._max_n = fitted.ngram_range
        self._word_cache: dict[str, tuple[int, ...]] = {}
        self._indices: Callable[[str], list[int]]
        if fitted.analyzer == "char_wb":
            self._preprocess = fitted.build_preprocessor()
            self._indices = self._char_wb_indices
        else:
            self._preprocess = str.lower if fitted.lowercase else _identity
            self._tokenize = re.compile(fitted.token_pattern).findall
            self._indices = self._word_indices

    def __getattr__(self, name: str) -> Any:
        # only reached for names this object lacks; never for dunders or before __init__ ran
        # (copy and pickle probe those on a bare instance)
        if name.startswith("__") or name == "fitted":
            raise AttributeError(name)
        return getattr(self.fitted, name)

    # -- analysis, as sklearn's _VectorizerMixin does it -----------------------------------------

    def _word_ngram_indices(self, word: str) -> tuple[int, ...]:
        """Vocabulary indices of one word's char_wb n-grams (sklearn's `_char_wb_ngrams`)."""
        w = " " + word + " "
        w_len = len(w)
        get = self._vocabulary.get
        found: list[int] = []
        for n in range(self._min_n, self._max_n + 1):
            offset = 0
            index = get(w[0:n])
            if index is not None:
                found.append(index)
            while offset + n < w_len:
                offset += 1
                index = get(w[offset : offset + n])
                if index is not None:
                    found.append(index)
            if offset == 0:  # a short word (w_len < n) counts once
                break
        return tuple(found)

    def _char_wb_indices(self, text: str) -> list[int]:
        cache = self._word_cache
        out: list[int] = []
        # sklearn collapses whitespace runs, then splits on whitespace: the same words
        for word in self._preprocess(text).split():
            found = cache.get(word)
            if found is None:
                found = self._word_ngram_indices(word)
                if len(cache) >= self.cache_max:
                    cache.clear()
                cache[word] = found
            out.extend(found)
        return out

    def _word_indices(self, text: str) -> list[int]:
        tokens = self._tokenize(self._preprocess(text))
        features: Iterable[str] = tokens
        if self._max_n > 1:
            grams = list(tokens) if self._min_n == 1 else []
            for n in range(max(self._min_n, 2), min(self._max_n, len(tokens)) + 1):
                grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            features = grams
        return [i for i in map(self._vocabulary.get, features) if i is not None]

    # -- the matrix --------------------------------------------------------------------------

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The count matrix sklearn's `CountVectorizer.transform` returns (sorted indices)."""
        indptr = [0]
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for text in texts:
            found = self._indices(text)
            if found:
                unique, count = np.unique(np.asarray(found, dtype=np.int64), return_counts=True)
                indices.append(unique)
                values.append(count)
                indptr.append(indptr[-1] + len(unique))
            else:
                indptr.append(indptr[-1])
        matrix = sp.csr_matrix(
            (
                np.concatenate(values) if values else np.empty(0, dtype=np.int64),
                np.concatenate(indices) if indices else np.empty(0, dtype=np.int64),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(texts), self._n_features),
            dtype=self.fitted.dtype,
        )
        matrix.has_sorted_indices = True
        if self.fitted.binary:
            matrix.data.fill(1)
        return matrix

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """What the fitted vectorizer's `transform(texts)` returns, for a list of strings."""
        if not all(type(t) is str for t in texts):
            return self.fitted.transform(texts)  # bytes, NaN, ...: sklearn's own handling
        matrix = self.counts(texts)
        if isinstance(self.fitted, TfidfVectorizer):
            self._tfidf_in_place(matrix)
        return matrix

    def _tfidf_in_place(self, matrix: sp.csr_matrix) -> None:
        """sklearn's `TfidfTransformer.transform` (1.9) on a fresh CSR matrix of counts."""
        tfidf = self.fitted._tfidf
        if tfidf.sublinear_tf:
            np.log(matrix.data, matrix.data)
            matrix.data += 1.0
        if hasattr(tfidf, "idf_"):
            matrix.data *= tfidf.idf_[matrix.indices]
        if tfidf.norm == "l2":
            inplace_csr_row_normalize_l2(matrix)
        elif tfidf.norm == "l1":
            inplace_csr_row_normalize_l1(matrix)


def _identity(text: str) -> str:
    return text
