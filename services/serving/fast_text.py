"""A fitted TF-IDF vectorizer's `transform`, the same matrix at a fraction of the cost.

scikit-learn's `CountVectorizer.transform` is pure Python per n-gram: for a `char_wb` analyzer
it slices every 2..5-gram of every word and looks each up in the vocabulary, for every message,
even though a word's n-grams are always the same. Profiled under load, the two vectorizers of
the candidate were ~30 % of a serving worker's CPU (the char_wb one two thirds of that).

`cached_vectorizer(fitted)` reproduces the fitted vectorizer's analysis exactly and
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


def supports(vectorizer: Any) -> bool:
    """True when `cached_vectorizer` reproduces this fitted vectorizer's transform exactly."""
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
    """The fast `transform`, mixed in front of a fitted vectorizer's own class.

    `cached_vectorizer(fitted)` returns an instance of a subclass of the fitted object's class
    (`CachedTfidfVectorizer(CachedVectorizer, TfidfVectorizer)`) holding the fitted state: to
    sklearn it is still a TfidfVectorizer (tags, params, `isinstance`, the checks of Pipeline
    and ColumnTransformer); only `transform` differs. The subclass is made at run time, so a
    prepared model is not pickled; the registered model stays the original object.
    """

    # the fitted vectorizer's own attributes (CountVectorizer's)
    vocabulary_: dict[str, int]
    ngram_range: tuple[int, int]
    analyzer: str
    binary: bool
    dtype: Any

    def _init_fast(self, cache_max: int) -> None:
        self._fast_cache_max = cache_max
        self._word_cache: dict[str, tuple[int, ...]] = {}
        # sklearn's own preprocessor and tokenizer: the same lower-casing, the same tokens
        self._fast_preprocess: Callable[[str], str] = self.build_preprocessor()  # type: ignore[attr-defined]
        self._fast_indices: Callable[[str], list[int]]
        if self.analyzer == "char_wb":
            self._fast_indices = self._char_wb_indices
        else:
            self._fast_tokenize: Callable[[str], list[str]] = self.build_tokenizer()  # type: ignore[attr-defined]
            self._fast_indices = self._word_indices

    # -- analysis, as sklearn's _VectorizerMixin does it -----------------------------------------

    def _word_ngram_indices(self, word: str) -> tuple[int, ...]:
        """Vocabulary indices of one word's char_wb n-grams (sklearn's `_char_wb_ngrams`)."""
        w = " " + word + " "
        w_len = len(w)
        get = self.vocabulary_.get
        min_n, max_n = self.ngram_range
        found: list[int] = []
        for n in range(min_n, max_n + 1):
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
        for word in self._fast_preprocess(text).split():
            found = cache.get(word)
            if found is None:
                found = self._word_ngram_indices(word)
                if len(cache) >= self._fast_cache_max:
                    cache.clear()
                cache[word] = found
            out.extend(found)
        return out

    def _word_indices(self, text: str) -> list[int]:
        tokens = self._fast_tokenize(self._fast_preprocess(text))
        min_n, max_n = self.ngram_range
        features: Iterable[str] = tokens
        if max_n > 1:
            grams = list(tokens) if min_n == 1 else []
            for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
                grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            features = grams
        return [i for i in map(self.vocabulary_.get, features) if i is not None]

    # -- the matrix --------------------------------------------------------------------------

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The count matrix sklearn's `CountVectorizer.transform` returns (sorted indices)."""
        indptr = [0]
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for text in texts:
            found = self._fast_indices(text)
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
            shape=(len(texts), len(self.vocabulary_)),
            dtype=self.dtype,
        )
        matrix.has_sorted_indices = True
        if self.binary:
            matrix.data.fill(1)
        return matrix

    def transform(self, raw_documents: Any) -> sp.csr_matrix:
        """What the fitted vectorizer's `transform(raw_documents)` returns."""
        texts = list(raw_documents)
        if not all(type(t) is str for t in texts):
            # bytes, NaN, ...: sklearn's own handling
            return super().transform(raw_documents)  # type: ignore[misc]
        matrix = self.counts(texts)
        if isinstance(self, TfidfVectorizer):
            self._tfidf_in_place(matrix)
        return matrix

    def _tfidf_in_place(self, matrix: sp.csr_matrix) -> None:
        """sklearn's `TfidfTransformer.transform` (1.9) on a fresh CSR matrix of counts."""
        tfidf = self._tfidf  # type: ignore[attr-defined]
        if tfidf.sublinear_tf:
            np.log(matrix.data, matrix.data)
            matrix.data += 1.0
        if hasattr(tfidf, "idf_"):
            matrix.data *= tfidf.idf_[matrix.indices]
        if tfidf.norm == "l2":
            inplace_csr_row_normalize_l2(matrix)
        elif tfidf.norm == "l1":
            inplace_csr_row_normalize_l1(matrix)


_SUBCLASSES: dict[type, type] = {}


def cached_vectorizer(fitted: CountVectorizer, cache_max: int = WORD_CACHE_MAX) -> Any:
    """The fitted vectorizer with the fast `transform` (a new object sharing its fitted
    vocabulary and idf; `fitted` itself is not changed)."""
    if isinstance(fitted, CachedVectorizer):
        return fitted
    if not supports(fitted):
        raise ValueError(f"unsupported vectorizer configuration: {fitted!r}")
    base = type(fitted)
    subclass = _SUBCLASSES.get(base)
    if subclass is None:
        subclass = type(f"Cached{base.__name__}", (CachedVectorizer, base), {})
        _SUBCLASSES[base] = subclass
    fast: Any = object.__new__(subclass)
    fast.__dict__.update(fitted.__dict__)
    fast._init_fast(cache_max)
    return fast
