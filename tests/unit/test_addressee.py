"""The abuse model's addressee features and pipeline, on inline strings (no data needed)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from pipelines.addressee import (
    ABUSE_MEMBERS,
    BLOCKS,
    PERSON_COUNT_NAMES,
    AbuseFeatures,
    AddresseeEnsemble,
    AddresseeTokens,
    FuzzyLexicon,
    NBScaler,
    PersonCounts,
    abuse_text_pipeline,
    addressee_tokens,
    is_insult_word,
    known_words,
    normalise,
    person_counts,
    you_sentences,
)
from tests.support.abuse_texts import HARMLESS, INSULTS

YOU = "you are an idiot"
HE = "he is an idiot"
ME = "I am an idiot"

TRAIN_TEXTS = [*INSULTS[:6], *HARMLESS[:8]]  # the first six of each, in that order
TRAIN_LABELS = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]


def test_addressee_tokens_tell_who_is_insulted() -> None:
    you, he, me = (set(addressee_tokens(t)) for t in (YOU, HE, ME))
    assert {"YOUARE_idiot", "Y_idiot", "Y_LEX"} <= you
    assert {"TISA_idiot", "T_idiot", "T_LEX"} <= he
    assert {"IAM_idiot", "I_idiot", "I_LEX"} <= me
    assert not you & {"T_idiot", "I_idiot"}
    assert "Y_idiot" not in he | me


def test_person_counts_differ() -> None:
    index = PERSON_COUNT_NAMES.index
    you, he, me = (person_counts(t) for t in (YOU, HE, ME))
    assert you != he != me != you
    assert you[index("you_are_frame")] > 0 and he[index("you_are_frame")] == 0
    assert me[index("i_am_frame")] > 0 and you[index("i_am_frame")] == 0
    assert he[index("third_is_frame")] > 0
    assert you[index("you_insult_words")] > 0 == me[index("you_insult_words")]
    assert you[index("second_share")] == 1.0


def test_transformers_give_different_rows() -> None:
    texts = [YOU, HE, ME]
    marked = AddresseeTokens(min_df=1).fit(texts).transform(texts).toarray()
    counts = PersonCounts().fit(texts).transform(texts).toarray()
    for rows in (marked, counts):
        assert not np.allclose(rows[0], rows[1])
        assert not np.allclose(rows[0], rows[2])
        assert not np.allclose(rows[1], rows[2])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You are an ID1OT!!!", "you are an idiot!!!"),
        ("sooooo stupid", "soo stupid"),
        ("see http://example.com/x now", "see  url  now"),
        ("room 101 at 10", "room 101 at 10"),  # numbers alone are not leetspeak
        ("at 5pm", "at spm"),  # known quirk: a digit inside a word is read as a letter
        ("it\u2019s\xa0fine", "it's fine"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_leetspeak_and_vocatives() -> None:
    assert "YOUARE_idiot" in addressee_tokens("ur an id1ot")
    assert "YOUVOC_moron" in addressee_tokens("shut up you moron")
    assert "VOC_moron" in addressee_tokens("Get a clue, moron.")
    assert "AT_loser" in addressee_tokens("@bob loser")
    assert "YB_LEX" in addressee_tokens("only muppets like you")


def test_insult_lexicon() -> None:
    assert all(map(is_insult_word, ["idiot", "idiots", "libidiot", "morons", "dumbass"]))
    assert not any(map(is_insult_word, ["assume", "standard", "class", "hello", "father"]))


def test_fuzzy_lexicon_matches_misspellings_of_unknown_words_only() -> None:
    lexicon = FuzzyLexicon(frozenset({"where", "toward", "lower"}))
    # one substitution, deletion, insertion or swap from a stem of 5+ letters; letter runs
    misspelt = ["idoit", "stupd", "morrons", "stuuupid", "idiiot", "retrad", "imbecil"]
    assert all(map(lexicon, misspelt))
    assert not any(map(is_insult_word, misspelt))
    # words the training texts know are real words ("lower" is one edit from "loser"), short
    # words are never fuzzy ("dump" / "dumb"), and unrelated words do not match
    assert not any(map(lexicon, ["where", "toward", "lower", "dump", "hello", "weather"]))
    assert all(map(lexicon, ["idiot", "morons", "libidiot"]))  # the exact lexicon still holds
    assert not FuzzyLexicon(frozenset())("assume")  # nor its false friends


def test_known_words_count_documents() -> None:
    texts = ["the cat sat", "the cat ran", "the dog, the dog"]
    assert known_words(texts, min_df=2) == frozenset({"the", "cat"})
    assert "dog" in known_words(texts, min_df=1)


def test_fuzzy_lexicon_marks_misspelt_insults_aimed_at_you() -> None:
    assert "Y_LEX" not in addressee_tokens("you are an idoit")
    lexicon = FuzzyLexicon(frozenset())
    marked = addressee_tokens("you are an idoit", lexicon=lexicon)
    assert {"YOUARE_idoit", "YOUARE_LEX", "Y_LEX", "LEX"} <= set(marked)
    features = AbuseFeatures(min_df=1, fuzzy_lexicon=True).fit(TRAIN_TEXTS)
    assert isinstance(features.lexicon_, FuzzyLexicon)
    # the training texts' words are known: "moron" is in them, "idoit" is not
    assert "moron" in features.lexicon_.known and "idoit" not in features.lexicon_.known
    row = features.transform(["you idoit"]).toarray()[0]
    counts = dict(zip(PERSON_COUNT_NAMES, row[features.block_columns(["counts"])], strict=True))
    assert counts["you_insult_words"] > 0
    text = ["u r a stupd idoit"]
    restored = pickle.loads(pickle.dumps(features))
    assert abs(restored.transform(text) - features.transform(text)).max() == 0


def test_fast_features_equal_a_feature_union() -> None:
    texts = [*TRAIN_TEXTS, "an unseen text about nothing", ""]
    fast = AbuseFeatures(min_df=1).fit(TRAIN_TEXTS)
    reference = FeatureUnion(
        [
            (
                "w",
                TfidfVectorizer(
                    preprocessor=normalise, ngram_range=(1, 3), sublinear_tf=True, min_df=1
                ),
            ),
            (
                "c",
                TfidfVectorizer(
                    preprocessor=normalise,
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    sublinear_tf=True,
                    min_df=1,
                ),
            ),
            ("a", AddresseeTokens(min_df=1)),
            ("p", PersonCounts()),
        ]
    ).fit(TRAIN_TEXTS)
    got = fast.transform(texts)
    want = reference.transform(texts)
    assert got.shape == want.shape == (len(texts), len(fast.get_feature_names_out()))
    assert abs(got - want).max() < 1e-12


def test_pipeline_fits_and_ranks_directed_insults_higher() -> None:
    model = abuse_text_pipeline().fit(TRAIN_TEXTS, TRAIN_LABELS)
    p_you, p_he, p_me = model.predict_proba([YOU, HE, ME])[:, 1]
    assert p_you > p_he and p_you > p_me
    assert model.predict_proba(["a"])[0].sum() == pytest.approx(1.0)


def test_pipeline_is_deterministic_and_picklable() -> None:
    texts = [YOU, HE, ME, "you absolute muppet", "lovely weather"]
    first = abuse_text_pipeline(seed=0).fit(TRAIN_TEXTS, TRAIN_LABELS).predict_proba(texts)
    second = abuse_text_pipeline(seed=0).fit(TRAIN_TEXTS, TRAIN_LABELS).predict_proba(texts)
    assert np.array_equal(first, second)
    model = abuse_text_pipeline().fit(TRAIN_TEXTS, TRAIN_LABELS)
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(restored.predict_proba(texts), model.predict_proba(texts))


def test_single_string_is_refused() -> None:
    model = abuse_text_pipeline().fit(TRAIN_TEXTS, TRAIN_LABELS)
    with pytest.raises(TypeError, match="iterable of texts"):
        model.predict_proba(YOU)


def test_nb_scaler_ratios() -> None:
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    scaler = NBScaler(alpha=1.0).fit(X, [1, 1, 0])
    # column 0: in both positives, no negative -> (3/6) / (1/4) = 2
    assert scaler.ratios_[0] == pytest.approx(np.log((3 / 6) / (1 / 4)))
    assert scaler.ratios_[1] < 0 < scaler.ratios_[2]
    scaled = scaler.transform(X).toarray()
    assert np.allclose(scaled, X.toarray() * scaler.ratios_)
    assert X.toarray()[0, 0] == 1.0  # the input is not modified
    named = NBScaler().fit(X, np.array(["yes", "yes", "no"]))
    assert np.allclose(named.ratios_, scaler.ratios_)
    with pytest.raises(ValueError, match="two classes"):
        NBScaler().fit(X, [1, 1, 1])


def test_marks_stop_after_the_window() -> None:
    text = "you said one two three idiot"
    assert "Y_idiot" not in addressee_tokens(text, window=4)
    assert "Y_idiot" in addressee_tokens(text, window=5)
    assert "Y_said" in addressee_tokens(text, window=4)


def test_you_sentences_keep_only_sentences_that_address_someone() -> None:
    assert you_sentences("He is an idiot. You are right!") == "you are right!"
    assert you_sentences("He is an idiot. She is too.") == ""
    assert you_sentences("ur a clown\nnice weather") == "ur a clown"
    assert you_sentences("Your ID1OT dog. Yours truly") == "your idiot dog. yours truly"
    assert you_sentences("") == ""


def _reference_union_with_you_sentences() -> FeatureUnion:
    def tfidf(**kwargs: object) -> TfidfVectorizer:
        return TfidfVectorizer(sublinear_tf=True, min_df=1, **kwargs)  # type: ignore[arg-type]

    return FeatureUnion(
        [
            ("w", tfidf(preprocessor=normalise, ngram_range=(1, 3))),
            ("c", tfidf(preprocessor=normalise, analyzer="char_wb", ngram_range=(2, 5))),
            ("a", AddresseeTokens(min_df=1)),
            ("p", PersonCounts()),
            ("yw", tfidf(preprocessor=you_sentences, ngram_range=(1, 3))),
            ("yc", tfidf(preprocessor=you_sentences, analyzer="char_wb", ngram_range=(2, 5))),
        ]
    )


def test_fast_features_with_you_sentences_equal_a_feature_union() -> None:
    texts = [*TRAIN_TEXTS, "He is an idiot. You are right!", "an unseen text", ""]
    fast = AbuseFeatures(min_df=1, you_sentences=True).fit(TRAIN_TEXTS)
    reference = _reference_union_with_you_sentences().fit(TRAIN_TEXTS)
    got = fast.transform(texts)
    want = reference.transform(texts)
    assert got.shape == want.shape == (len(texts), len(fast.get_feature_names_out()))
    assert abs(got - want).max() < 1e-12


def test_block_columns_partition_the_features() -> None:
    features = AbuseFeatures(min_df=1, you_sentences=True).fit(TRAIN_TEXTS)
    names = features.get_feature_names_out()
    parts = [features.block_columns([block]) for block in BLOCKS]
    assert all(len(part) > 0 for part in parts)
    assert np.array_equal(np.concatenate(parts), np.arange(len(names)))
    assert np.array_equal(features.block_columns(BLOCKS), np.arange(len(names)))
    assert all(n.startswith("yw:") for n in names[features.block_columns(["you_words"])])
    assert list(names[features.block_columns(["counts"])]) == list(PERSON_COUNT_NAMES)
    with pytest.raises(ValueError, match="unknown feature blocks"):
        features.block_columns(["nope"])
    plain = AbuseFeatures(min_df=1).fit(TRAIN_TEXTS)
    assert plain.block_columns(["you_words", "you_chars"]).size == 0


def test_ensemble_is_the_mean_of_its_members_logits() -> None:
    texts = [*TRAIN_TEXTS, "you absolute muppet", "He is an idiot. You are right!"]
    features = AbuseFeatures(min_df=1, you_sentences=True)
    model = AddresseeEnsemble(ABUSE_MEMBERS, features=features).fit(TRAIN_TEXTS, TRAIN_LABELS)
    X_train = model.features_.transform(TRAIN_TEXTS)
    X = model.features_.transform(texts)
    logits = []
    for blocks, C in ABUSE_MEMBERS:
        columns = model.features_.block_columns(blocks)
        scaler = NBScaler().fit(X_train[:, columns], TRAIN_LABELS)
        member = LogisticRegression(C=C, max_iter=5000)
        member.fit(scaler.transform(X_train[:, columns]), TRAIN_LABELS)
        logits.append(member.decision_function(scaler.transform(X[:, columns])))
    assert model.n_members_ == len(ABUSE_MEMBERS)
    assert np.allclose(model.decision_function(texts), np.mean(logits, axis=0), atol=1e-10)
    proba = model.predict_proba(texts)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(texts), (proba[:, 1] > 0.5).astype(int))


def test_ensemble_fits_when_nobody_is_addressed() -> None:
    texts = ["he is an idiot", "she is a moron", "nice weather", "good game"]
    features = AbuseFeatures(min_df=2, you_sentences=True)
    model = AddresseeEnsemble(ABUSE_MEMBERS, features=features).fit(texts, [1, 1, 0, 0])
    assert model.features_.you_words_ is None and model.features_.you_chars_ is None
    assert model.n_members_ == len(ABUSE_MEMBERS) - 1
    assert model.predict_proba(["you are an idiot"]).shape == (1, 2)


def test_pipeline_uses_the_ensemble_with_you_sentences() -> None:
    model = abuse_text_pipeline(seed=3)
    ensemble = model.named_steps["model"]
    assert isinstance(ensemble, AddresseeEnsemble)
    assert ensemble.features is not None and ensemble.features.you_sentences
    assert ensemble.features.fuzzy_lexicon
    assert ensemble.random_state == 3
    assert ensemble.members == ABUSE_MEMBERS
