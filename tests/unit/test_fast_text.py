"""CachedVectorizer gives exactly the matrix of the fitted sklearn vectorizer it stands in for,
on text written to trip it up (whitespace of every kind, short words, repeats, case, unseen
words, empty text), with a cache small enough to be cleared mid-batch; configurations it does
not reproduce are left to sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from pipelines.text_cleaning import HeadLower
from services.serving.fast_text import cached_vectorizer, supports

TRAIN = [
    "Cheap pills, free offer!!! Click now",
    "Meeting agenda for Tuesday: budget, hiring and the Q3 report",
    "Re: lunch? I can do 12:30 at the usual place",
    "FREE viagra cheap cheap cheap",
    "naïve café résumé — über straße",
    "a b c d e f g the the of of to to",
    "Order confirmation #10442: your parcel ships tomorrow",
]

TRICKY = [
    "",
    "   ",
    "x",
    "I a o",
    "CHEAP Pills\tfree\n\noffer\r\n click\u00a0now\u2003ok\x1c1",
    "cheap cheap cheap cheap cheap",
    "entirely unseen vocabulary zyxw qwrt",
    "Meeting agenda — Tuesday   report  budget, hiring",
    "naïve CAFÉ résumé über straße",
    "emoji 🚀🚀 launch 🚀 now",
    "the of to the of to",
    *TRAIN,
]

CONFIGS = {
    "word 1-2 tfidf": lambda: TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
    "word 1-3 counts": lambda: CountVectorizer(ngram_range=(1, 3)),
    "word 2-2 binary": lambda: CountVectorizer(ngram_range=(2, 2), binary=True),
    "word unigrams, case kept": lambda: TfidfVectorizer(lowercase=False),
    "word l1, no idf": lambda: TfidfVectorizer(norm="l1", use_idf=False),
    "word no norm": lambda: TfidfVectorizer(norm=None, sublinear_tf=True),
    "char_wb 2-5, head preprocessor": lambda: TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, preprocessor=HeadLower(40)
    ),
    "char_wb 1-3 default": lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)),
    "char_wb 3-3 counts": lambda: CountVectorizer(analyzer="char_wb", ngram_range=(3, 3)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("cache_max", [3, 50_000])
def test_the_matrix_is_sklearns(name: str, cache_max: int) -> None:
    fitted = CONFIGS[name]().fit(TRAIN)
    fast = cached_vectorizer(fitted, cache_max=cache_max)
    for _ in range(2):  # the second pass is served from the warm cache
        got = fast.transform(TRICKY)
        want = fitted.transform(TRICKY)
        assert got.shape == want.shape
        assert got.dtype == want.dtype
        got.sort_indices()
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)
    assert len(fast._word_cache) <= cache_max


def test_one_text_at_a_time_equals_the_batch() -> None:
    fitted = CONFIGS["char_wb 2-5, head preprocessor"]().fit(TRAIN)
    fast = cached_vectorizer(fitted)
    batch = fast.transform(TRICKY).toarray()
    for i, text in enumerate(TRICKY):
        np.testing.assert_array_equal(fast.transform([text]).toarray()[0], batch[i])


def test_non_string_documents_take_sklearns_path() -> None:
    fitted = TfidfVectorizer().fit(TRAIN)
    fast = cached_vectorizer(fitted)
    np.testing.assert_array_equal(
        fast.transform([b"cheap pills"]).toarray(), fitted.transform([b"cheap pills"]).toarray()
    )


def test_attributes_are_the_fitted_vectorizers() -> None:
    fitted = TfidfVectorizer().fit(TRAIN)
    fast = cached_vectorizer(fitted)
    assert fast.vocabulary_ is fitted.vocabulary_
    assert isinstance(fast, TfidfVectorizer)
    assert fast.get_params() == fitted.get_params()
    np.testing.assert_array_equal(fast.get_feature_names_out(), fitted.get_feature_names_out())


@pytest.mark.parametrize(
    "vectorizer",
    [
        TfidfVectorizer(stop_words="english"),
        TfidfVectorizer(strip_accents="unicode"),
        TfidfVectorizer(analyzer="char"),
        TfidfVectorizer(tokenizer=str.split, token_pattern=None),
        TfidfVectorizer(analyzer=str.split),
        TfidfVectorizer(token_pattern=r"(\w+)"),
    ],
    ids=["stop words", "accents", "char", "tokenizer", "callable analyzer", "pattern group"],
)
def test_configurations_it_does_not_reproduce_are_refused(vectorizer: TfidfVectorizer) -> None:
    vectorizer.fit(TRAIN)
    assert not supports(vectorizer)
    with pytest.raises(ValueError, match="unsupported"):
        cached_vectorizer(vectorizer)


def test_an_unfitted_vectorizer_is_refused() -> None:
    assert not supports(TfidfVectorizer())
