"""Addressee-aware text features for the abuse policy: WHO a comment's words are aimed at.

The abuse label means "an insult aimed at a participant of the conversation", so "you are an
idiot" is abuse while "he is an idiot", "I'm such an idiot" and "this bug is killing me" are
not. Plain bag-of-words models see the same `idiot` in all of them; the features here tell them
apart:

- `addressee_tokens(text)`: each word is emitted again with the grammatical person of the
  nearest pronoun before it in the same clause (`Y_idiot` after you/your/ur/u, `I_idiot` after
  I/me/my, `T_idiot` after he/she/they/this/...), so the model learns `Y_idiot` separately
  from `I_idiot`; words just before "you" get `YB_` ("parasites like you"). Copular frames get
  their own token (`YOUARE_idiot`, `IAM_idiot`, `TISA_idiot`), as do vocatives (`you idiot`,
  "get a clue, moron", `@name idiot`). Name-calling words from a small hand-written lexicon
  (`INSULT_STEMS`, `INSULT_INFIXES`) also give class tokens (`Y_LEX`, `I_LEX`, `VOC_LEX`, ...),
  so an insult never seen aimed at "you" in training still counts as one. `FuzzyLexicon`
  extends the lexicon to misspellings ("idoit", "stupd") of words the training texts do not
  know.
- `PersonCounts`: a few dense counts (second/first/third-person pronouns, @mentions, the
  copular frames, lexicon words, lexicon words aimed at "you") on a log scale.
- `AbuseFeatures`: the whole feature set of the model in one transformer, with a fast path
  for scoring one text (about 1 ms of CPU).
- `you_sentences(text)`: the sentences that address someone (hold you/your/u/ur/...), whose
  word and char n-grams are a block of their own in `AbuseFeatures(you_sentences=True)`.
- `AddresseeEnsemble`: naive-Bayes-scaled logistic regressions on subsets of the feature
  blocks (`ABUSE_MEMBERS`), their logits averaged and folded into one linear model.

`abuse_text_pipeline()` builds the model chosen on the time-split validation and 5-fold CV of
the history comments (`pipelines.abuse_selection`, modstack/policies/abuse/DATA.md):
`AbuseFeatures` (word 1-3-gram and char_wb 2-5-gram TF-IDF of the normalised text, TF-IDF of
the addressee tokens with the fuzzy lexicon, the person counts, word and char n-grams of the
you-sentences), then `AddresseeEnsemble` of five members:
all blocks (C=1), word n-grams (C=3), char n-grams (C=1), addressee tokens + person counts
(C=1), you-sentences (C=1); `pipelines.fitting` cross-fits it (`folds=5`: the served model is
the mean of five fold models, the cut-offs sit on their out-of-fold scores). It imports only
numpy/scipy/scikit-learn and the stdlib, so serving
can load it next to the spam model; scoring one text is one sparse dot product after the
features (under a millisecond of CPU for a typical comment).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

SECOND_PERSON = frozenset(
    {
        "you",
        "u",
        "ya",
        "ye",
        "yu",
        "yo",
        "your",
        "yours",
        "ur",
        "yer",
        "youre",
        "you're",
        "yourself",
        "yourselves",
        "thou",
        "thee",
        "thy",
        "you've",
        "you'll",
        "you'd",
        "ya'll",
        "yall",
        "y'all",
    }
)
FIRST_PERSON = frozenset(
    {
        "i",
        "me",
        "my",
        "mine",
        "myself",
        "i'm",
        "im",
        "i've",
        "i'll",
        "i'd",
        "we",
        "us",
        "our",
        "ours",
        "ourselves",
        "we're",
    }
)
THIRD_PERSON = frozenset(
    {
        "he",
        "she",
        "him",
        "her",
        "his",
        "hers",
        "they",
        "them",
        "their",
        "theirs",
        "he's",
        "she's",
        "they're",
        "himself",
        "herself",
        "themselves",
        "it",
        "it's",
        "its",
        "this",
        "that",
        "these",
        "those",
        "who",
    }
)
_PRONOUNS = SECOND_PERSON | FIRST_PERSON | THIRD_PERSON
_PERSON_MARK = {"Y": SECOND_PERSON, "I": FIRST_PERSON, "T": THIRD_PERSON}
_COPULAS = frozenset({"are", "r", "is", "am", "was", "were", "be", "being", "'re", "'m", "'s"})
_ARTICLES = frozenset({"a", "an", "such", "the", "so", "such_a", "total", "complete", "real"})
# "you're" and "i'm" also carry the copula: "you're a X" is a copular frame.
_COPULAR_PRONOUNS = {
    "you're": "YOUARE",
    "youre": "YOUARE",
    "ur": "YOUARE",
    "i'm": "IAM",
    "im": "IAM",
    "he's": "TISA",
    "she's": "TISA",
    "they're": "TISA",
    "it's": "TISA",
}
_SUBJECT_FRAME = {"you": "YOUARE", "u": "YOUARE", "i": "IAM", "we": "IAM"}
# "your" before one of these is "you're" misspelt ("your an idiot"), not a possessive
_YOUR_ARTICLES = frozenset({"a", "an"})
# Stems of name-calling words (written for this module, not taken from the data): a class token
# (`Y_LEX`) lets the model generalise from the insults it has seen aimed at "you" to the others.
INSULT_STEMS = (
    "idiot",
    "moron",
    "stupid",
    "dumb",
    "retard",
    "loser",
    "fool",
    "imbecile",
    "cretin",
    "ignorant",
    "pathetic",
    "clown",
    "jerk",
    "ass",
    "arse",
    "bitch",
    "bastard",
    "dick",
    "prick",
    "cunt",
    "twat",
    "wanker",
    "douche",
    "scum",
    "troll",
    "liar",
    "coward",
    "hypocrite",
    "fag",
    "faggot",
    "slut",
    "whore",
    "pig",
    "dog",
    "rat",
    "worm",
    "trash",
    "garbage",
    "freak",
    "creep",
    "punk",
    "sissy",
    "pussy",
    "tard",
    "nitwit",
    "dimwit",
    "halfwit",
    "dipshit",
    "shithead",
    "dumbass",
    "jackass",
    "asshole",
    "dork",
    "nerd",
    "ugly",
    "fat",
    "lame",
    "sick",
    "disgusting",
    "worthless",
    "useless",
    "clueless",
    "brainless",
    "gutless",
    "spineless",
    "mindless",
    "idiocy",
    "stfu",
    "gtfo",
    "shut",
    "fuck",
    "fck",
    "fuk",
    "shit",
    "crap",
    "suck",
    "hate",
    "die",
    "kill",
    "racist",
    "bigot",
    "nazi",
    "commie",
    "redneck",
    "hillbilly",
    "thug",
    "lowlife",
    "dumbfuck",
    "nutjob",
    "nutcase",
    "lunatic",
    "psycho",
    "crazy",
    "insane",
    "delusional",
    "brainwashed",
)
# Stems that insult wherever they sit in a word ("libidiot", "reidtard", "rocksucker").
INSULT_INFIXES = (
    "idiot",
    "moron",
    "fuck",
    "sucker",
    "asshole",
    "shithead",
    "dumbass",
    "douche",
    "wingnut",
    "knucklehead",
    "muppet",
    "parasite",
    "turd",
    "scumbag",
    "tard",
)
_STEMS = "|".join(sorted(INSULT_STEMS, key=len, reverse=True))
_INFIXES = "|".join(sorted(INSULT_INFIXES, key=len, reverse=True))
_LEXICON = re.compile(rf"(?:{_STEMS})[a-z']*|[a-z']*(?:{_INFIXES})[a-z']*")
# Words that start like a stem but are no insult.
_NOT_INSULTS = frozenset(
    {
        "assume",
        "assumed",
        "assuming",
        "assumption",
        "assist",
        "assistance",
        "assistant",
        "assess",
        "assessment",
        "asset",
        "assets",
        "associate",
        "associated",
        "association",
        "assure",
        "assured",
        "assert",
        "assign",
        "assigned",
        "assembly",
        "assault",
        "assaulted",
        "dogma",
        "ratio",
        "rather",
        "rate",
        "rates",
        "rated",
        "rating",
        "fatal",
        "fate",
        "father",
        "fathers",
        "fathom",
        "dickens",
        "pigment",
        "shutdown",
        "sicken",
        "killer",
        "skill",
        "lamen",
        "diet",
        "died",
        "dies",
        "dying",
        "diesel",
        "ratify",
        "assassin",
        "standard",
        "standards",
        "mustard",
        "custard",
        "leotard",
        "saturday",
    }
)


def is_insult_word(token: str) -> bool:
    """Whether `token` (normalised) is a name-calling word: it starts with one of
    `INSULT_STEMS` or holds one of `INSULT_INFIXES`, and is no known false friend."""
    return token not in _NOT_INSULTS and _LEXICON.fullmatch(token) is not None


Lexicon = Callable[[str], bool]

# Edit distance 1 is only trusted between words of at least this many letters: shorter stems
# have too many real-word neighbours ("dumb"/"dump", "fool"/"food").
FUZZY_MIN_CHARS = 5
_RUN = re.compile(r"(.)\1+")


def _deletions(word: str) -> set[str]:
    """`word` with one letter deleted, every way."""
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


_FUZZY_STEMS = tuple(
    stem for stem in sorted(set(INSULT_STEMS) | set(INSULT_INFIXES)) if len(stem) >= FUZZY_MIN_CHARS
)
# deletion neighbourhoods (the SymSpell idea): two words are within one substitution,
# insertion, deletion or adjacent transposition when the words or their one-letter deletions meet
_STEM_KEYS: frozenset[str] = frozenset(
    key for stem in _FUZZY_STEMS for key in (stem, *_deletions(stem))
)


class FuzzyLexicon:
    """`is_insult_word`, plus misspelt name-calling: a word the training texts do not know
    (fewer than `min_df` of them hold it: frequent words are real words, "where" is no typo of
    "whore") matches when, letter runs collapsed ("stuuupid"), it is a lexicon word, or it is
    one edit (substitution, insertion, deletion, adjacent swap) from a stem of at least
    `FUZZY_MIN_CHARS` letters, alone or before a plural `s` ("idoit", "stupd", "morrons").

    Picklable; results are cached per word (serving sees the same words again and again).
    """

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        self._cache: dict[str, bool] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"known": self.known}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.known = state["known"]
        self._cache = {}

    def __call__(self, token: str) -> bool:
        if is_insult_word(token):
            return True
        if token in self.known or len(token) < FUZZY_MIN_CHARS:
            return False
        hit = self._cache.get(token)
        if hit is None:
            hit = self._fuzzy(token)
            if len(self._cache) < 100_000:
                self._cache[token] = hit
        return hit

    def _fuzzy(self, token: str) -> bool:
        collapsed = _RUN.sub(r"\1", token)
        if collapsed != token and is_insult_word(collapsed):
            return True
        words = {token, collapsed}
        words |= {w[:-1] for w in words if w.endswith("s") and len(w) > FUZZY_MIN_CHARS}
        for word in words:
            if len(word) < FUZZY_MIN_CHARS:
                continue
            if word in _STEM_KEYS or not _deletions(word).isdisjoint(_STEM_KEYS):
                return True
        return False


def known_words(texts: Iterable[str], min_df: int = 2) -> frozenset[str]:
    """The words (`tokens`) that at least `min_df` of `texts` hold: real words, not typos."""
    df: dict[str, int] = {}
    for text in texts:
        for word in set(tokens(text)):
            if word[0].isalpha():
                df[word] = df.get(word, 0) + 1
    return frozenset(word for word, n in df.items() if n >= min_df)


_FILLERS = _COPULAS | _ARTICLES | frozenset({"and", "or", "of", "to", "in", "not"})
_CLAUSE_END = frozenset({".", "!", "?", ";", ":", ",", "\n"})

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s"})
_LEET_WORD = re.compile(r"\b(?=[a-z0-9$]*[a-z])(?=[a-z0-9$]*[0-9$])[a-z0-9$]{3,}\b")
_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_REPEAT = re.compile(r"(\w)\1{2,}")
_TOKEN = re.compile(r"@\w+|[a-z]+(?:'[a-z]+)?|[.!?;:,\n]")


def normalise(text: str) -> str:
    """Lower case, leetspeak undone inside words (`id1ot` -> `idiot`), letter runs cut to two,
    URLs replaced by ` URL `, no-break spaces as spaces, curly apostrophes straightened."""
    lowered = text.lower().replace("\xa0", " ").replace("\u2019", "'").replace("`", "'")
    lowered = _URL.sub(" url ", lowered)
    lowered = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), lowered)
    return _REPEAT.sub(r"\1\1", lowered)


def tokens(text: str) -> list[str]:
    """Words, @mentions and clause punctuation of the normalised text."""
    return _TOKEN.findall(normalise(text))


def addressee_tokens(
    text: str,
    window: int = 4,
    back: int = 2,
    lexicon: Lexicon = is_insult_word,
    your_copula: bool = False,
) -> list[str]:
    """Words marked with who they are aimed at, plus copular and vocative frame tokens.

    A word gets `Y_`, `I_` or `T_` when a second-, first- or third-person pronoun precedes it
    by at most `window` words in the same clause (the nearest pronoun wins), and `YB_` when a
    second-person pronoun follows it by at most `back` words ("parasites like you").
    `lexicon` says which words are name-calling (`is_insult_word`, or a `FuzzyLexicon`).
    `your_copula`: "your a X" / "your an X" (the common misspelling of "you're a X": "your"
    before an article is no possessive) is the copular frame `YOUARE_X` too.
    """
    toks = tokens(text)
    out: list[str] = []
    person: str | None = None
    since = 0
    for index, tok in enumerate(toks):
        if tok in _CLAUSE_END:
            person = None
        elif tok.startswith("@"):
            out.extend(_mention_tokens(toks, index))
            person, since = "Y", 0
        elif (mark := _person_of(tok)) is not None:
            out.extend(_pronoun_tokens(toks, index, mark, back, lexicon, your_copula))
            person, since = mark, 0
        else:
            since += 1
            aimed = person if since <= window else None
            out.extend(_word_tokens(toks, index, aimed, lexicon))
    return out


def _person_of(tok: str) -> str | None:
    """`Y`, `I` or `T` for a second-, first- or third-person pronoun, else None."""
    return next((m for m, words in _PERSON_MARK.items() if tok in words), None)


def _mention_tokens(toks: list[str], index: int) -> list[str]:
    """`MENTION`, and `AT_<word>` for the word right after "@name" (aimed at that participant)."""
    out = ["MENTION"]
    if index + 1 < len(toks) and toks[index + 1] not in _CLAUSE_END:
        out.append("AT_" + toks[index + 1])
    return out


def _pronoun_tokens(
    toks: list[str], index: int, mark: str, back: int, lexicon: Lexicon, your_copula: bool = False
) -> list[str]:
    """`P<mark>`, the copular / vocative frame starting at the pronoun, and `YB_` tokens."""
    out = ["P" + mark]
    frame = _copular_frame(toks, index, your_copula)
    if frame is not None:
        out.append(frame)
        head, word = frame.split("_", 1)
        if lexicon(word):
            out.append(head + "_LEX")
    if mark == "Y":
        out.extend(_before_you(toks, index, back, lexicon))
    return out


def _word_tokens(toks: list[str], index: int, person: str | None, lexicon: Lexicon) -> list[str]:
    """`LEX`, `<person>_<word>` (+ `<person>_LEX`) and vocative tokens for a plain word."""
    tok = toks[index]
    out: list[str] = []
    lexical = lexicon(tok)
    if lexical:
        out.append("LEX")
    if person is not None and tok not in _FILLERS:
        out.append(f"{person}_{tok}")
        if lexical:
            out.append(f"{person}_LEX")
    # Vocative at the start of a clause: "idiot, ..." / "moron!" addressed to the reader.
    if _alone_in_clause(toks, index):
        out.append("VOC_" + tok)
        if lexical:
            out.append("VOC_LEX")
    return out


def _alone_in_clause(toks: list[str], index: int) -> bool:
    """Whether the token at `index` starts a clause and clause punctuation follows it."""
    starts = index == 0 or toks[index - 1] in _CLAUSE_END
    return starts and index + 1 < len(toks) and toks[index + 1] in _CLAUSE_END


def _before_you(toks: list[str], index: int, back: int, lexicon: Lexicon) -> list[str]:
    """`YB_` tokens for the words just before the second-person pronoun at `index`."""
    out: list[str] = []
    for tok in reversed(toks[max(0, index - back) : index]):
        if tok in _CLAUSE_END or tok.startswith("@") or tok in _PRONOUNS:
            break
        if tok not in _FILLERS:
            out.append("YB_" + tok)
            if lexicon(tok):
                out.append("YB_LEX")
    return out


def _copular_frame(toks: list[str], index: int, your_copula: bool = False) -> str | None:
    """`you are (a|an|such a) X` -> `YOUARE_X`; `i am a X` -> `IAM_X`; `he is a X` -> `TISA_X`;
    with `your_copula`, `your (a|an) X` -> `YOUARE_X` as well."""
    tok = toks[index]
    nxt = index + 1
    if tok in _COPULAR_PRONOUNS:
        prefix = _COPULAR_PRONOUNS[tok]
    elif your_copula and tok == "your" and nxt < len(toks) and toks[nxt] in _YOUR_ARTICLES:
        prefix = "YOUARE"
    elif nxt < len(toks) and toks[nxt] in _COPULAS:
        prefix = _SUBJECT_FRAME.get(tok, "TISA" if tok in THIRD_PERSON else "")
        nxt += 1
    elif tok in ("you", "u", "ya") and nxt < len(toks) and toks[nxt] not in _CLAUSE_END:
        # "you idiot", "you stupid moron": vocative noun phrase right after "you".
        return "YOUVOC_" + toks[nxt]
    else:
        return None
    if not prefix:
        return None
    while nxt < len(toks) and toks[nxt] in _ARTICLES:
        nxt += 1
    if nxt < len(toks) and toks[nxt] not in _CLAUSE_END:
        return f"{prefix}_{toks[nxt]}"
    return None


class AddresseeTokens(BaseEstimator, TransformerMixin):
    """TF-IDF of `addressee_tokens` (unigrams of the marked tokens)."""

    def __init__(self, window: int = 4, back: int = 2, min_df: int = 2) -> None:
        self.window = window
        self.back = back
        self.min_df = min_df

    def _analyse(self, text: str) -> list[str]:
        return addressee_tokens(text, self.window, self.back)

    def fit(self, texts: Iterable[str], y: Any = None) -> AddresseeTokens:
        """Learn the vocabulary and IDF of the marked tokens."""
        self.vectorizer_ = TfidfVectorizer(
            analyzer=self._analyse, sublinear_tf=True, min_df=self.min_df, dtype=np.float64
        )
        self.vectorizer_.fit(_as_list(texts))
        return self

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """One TF-IDF row per text."""
        return self.vectorizer_.transform(_as_list(texts))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The marked tokens, in column order."""
        return np.asarray(self.vectorizer_.get_feature_names_out(), dtype=object)


PERSON_COUNT_NAMES = (
    "second_person",
    "first_person",
    "third_person",
    "mentions",
    "you_are_frame",
    "i_am_frame",
    "third_is_frame",
    "you_vocative",
    "insult_words",
    "you_insult_words",
    "second_share",
)


def person_counts(text: str, window: int = 4) -> list[float]:
    """Counts behind `PERSON_COUNT_NAMES` (log1p-scaled; the share in [0, 1])."""
    return person_counts_of(addressee_tokens(text, window))


def person_counts_of(marked: list[str]) -> list[float]:
    """`person_counts` from already computed `addressee_tokens`."""
    second = marked.count("PY")
    first = marked.count("PI")
    third = marked.count("PT")
    counts = [
        second,
        first,
        third,
        marked.count("MENTION"),
        _frames(marked, "YOUARE_"),
        _frames(marked, "IAM_"),
        _frames(marked, "TISA_"),
        _frames(marked, "YOUVOC_"),
        marked.count("LEX"),
        marked.count("Y_LEX"),
    ]
    share = second / (second + first + third) if second + first + third else 0.0
    return [math.log1p(c) for c in counts] + [share]


def _frames(marked: list[str], prefix: str) -> int:
    return sum(t.startswith(prefix) and not t.endswith("_LEX") for t in marked)


class PersonCounts(BaseEstimator, TransformerMixin):
    """Dense per-text counts of who is addressed (`PERSON_COUNT_NAMES`), as a sparse matrix."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, texts: Iterable[str], y: Any = None) -> PersonCounts:
        """Stateless: nothing to learn."""
        return self

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """One row of `PERSON_COUNT_NAMES` per text, times `scale`."""
        rows = [person_counts(text) for text in _as_list(texts)]
        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(PERSON_COUNT_NAMES))
        return sp.csr_matrix(matrix * self.scale)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """`PERSON_COUNT_NAMES`."""
        return np.asarray(PERSON_COUNT_NAMES, dtype=object)


def _as_list(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected an iterable of texts, got a single string")
    return ["" if text is None else str(text) for text in texts]


class _MarkedAnalyzer:
    """Picklable analyzer: `addressee_tokens` with fixed windows and lexicon."""

    def __init__(
        self,
        window: int,
        back: int,
        lexicon: Lexicon = is_insult_word,
        your_copula: bool = False,
    ) -> None:
        self.window = window
        self.back = back
        self.lexicon = lexicon
        self.your_copula = your_copula

    def __call__(self, text: str) -> list[str]:
        # analyzers pickled before `your_copula` existed have no such attribute
        your_copula = getattr(self, "your_copula", False)
        return addressee_tokens(text, self.window, self.back, self.lexicon, your_copula)


def _tfidf_rows(
    vectorizer: TfidfVectorizer, docs: list[list[str]], offset: int, out: _Rows
) -> None:
    """Append to `out` what `vectorizer.transform` gives for already analysed documents.

    Same numbers as `TfidfVectorizer(sublinear_tf=True, norm="l2").transform` (checked by the
    unit tests), without its per-call validation overhead: that overhead, not the arithmetic,
    dominates the cost of scoring one short text.
    """
    vocabulary = vectorizer.vocabulary_
    idf = vectorizer.idf_
    for row, doc in enumerate(docs):
        counts: dict[int, int] = {}
        for token in doc:
            column = vocabulary.get(token)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if not counts:
            continue
        columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (np.log(tf) + 1.0) * idf[columns]
        values /= math.sqrt(float(values @ values))
        out.add(row, columns + offset, values)


class _Rows:
    """Collects (row, columns, values) pieces and builds one CSR matrix."""

    def __init__(self, n_rows: int) -> None:
        self.pieces: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.n_rows = n_rows

    def add(self, row: int, columns: np.ndarray, values: np.ndarray) -> None:
        self.pieces.append((row, columns, values))

    def matrix(self, n_columns: int) -> sp.csr_matrix:
        rows = [np.full(len(c), r, dtype=np.int64) for r, c, _ in self.pieces]
        if not rows:
            return sp.csr_matrix((self.n_rows, n_columns), dtype=np.float64)
        return sp.csr_matrix(
            (
                np.concatenate([v for _, _, v in self.pieces]),
                (np.concatenate(rows), np.concatenate([c for _, c, _ in self.pieces])),
            ),
            shape=(self.n_rows, n_columns),
        )


_SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")
_WORD = re.compile(r"[a-z']+")


def you_sentences(text: str) -> str:
    """The sentences of the normalised text that address someone (hold a second-person word
    such as you/your/u/ur), joined by spaces; "" when none does.

    "He is an idiot. You are right." -> "you are right.": n-grams of these sentences alone let
    the model weigh the words said to the reader apart from the words said about others.
    """
    return " ".join(
        sentence.strip()
        for sentence in _SENTENCE.findall(normalise(text))
        if any(word in SECOND_PERSON for word in _WORD.findall(sentence))
    )


# The column blocks of `AbuseFeatures`, in order.
BLOCKS = ("words", "chars", "addressee", "counts", "you_words", "you_chars")


class AbuseFeatures(BaseEstimator, TransformerMixin):
    """All of the abuse model's features in one transformer (the serving path).

    Column blocks (`BLOCKS`): word n-gram TF-IDF of the normalised text, char_wb n-gram TF-IDF
    of it, TF-IDF of the addressee tokens, `PERSON_COUNT_NAMES`, then (with `you_sentences`)
    word and char_wb n-gram TF-IDF of `you_sentences(text)`. Equivalent to a `FeatureUnion` of
    `TfidfVectorizer`s, `AddresseeTokens` and `PersonCounts`, but it normalises and marks each
    text once and skips the per-block validation, so one text costs about a millisecond.
    `fuzzy_lexicon`: the addressee tokens and counts use a `FuzzyLexicon` over the words the
    training texts know (misspelt name-calling counts), else the exact `is_insult_word`.
    `your_copula`: "your a X" counts as the frame "you're a X" (`addressee_tokens`).
    """

    def __init__(
        self,
        word_ngrams: tuple[int, int] = (1, 3),
        char_ngrams: tuple[int, int] = (2, 5),
        window: int = 4,
        back: int = 2,
        min_df: int = 2,
        you_sentences: bool = False,
        fuzzy_lexicon: bool = False,
        your_copula: bool = False,
    ) -> None:
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.window = window
        self.back = back
        self.min_df = min_df
        self.you_sentences = you_sentences
        self.fuzzy_lexicon = fuzzy_lexicon
        self.your_copula = your_copula

    def fit(self, texts: Iterable[str], y: Any = None) -> AbuseFeatures:
        """Learn the vocabularies and their IDF."""
        docs = _as_list(texts)
        common = {"sublinear_tf": True, "min_df": self.min_df, "dtype": np.float64}
        self.words_ = TfidfVectorizer(
            preprocessor=normalise, ngram_range=self.word_ngrams, **common
        ).fit(docs)
        self.chars_ = TfidfVectorizer(
            preprocessor=normalise, analyzer="char_wb", ngram_range=self.char_ngrams, **common
        ).fit(docs)
        # misspelt name-calling counts as such (`FuzzyLexicon`) unless the training texts
        # hold the word often enough to call it a real word of its own
        self.lexicon_: Lexicon = (
            FuzzyLexicon(known_words(docs)) if self.fuzzy_lexicon else is_insult_word
        )
        self.addressee_ = TfidfVectorizer(
            analyzer=_MarkedAnalyzer(self.window, self.back, self.lexicon_, self.your_copula),
            **common,
        ).fit(docs)
        self.you_words_: TfidfVectorizer | None = None
        self.you_chars_: TfidfVectorizer | None = None
        if self.you_sentences:
            addressed = [you_sentences(text) for text in docs]
            self.you_words_ = _fit_or_none(
                TfidfVectorizer(ngram_range=self.word_ngrams, **common), addressed
            )
            self.you_chars_ = _fit_or_none(
                TfidfVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, **common),
                addressed,
            )
        self.block_sizes_ = {
            "words": len(self.words_.vocabulary_),
            "chars": len(self.chars_.vocabulary_),
            "addressee": len(self.addressee_.vocabulary_),
            "counts": len(PERSON_COUNT_NAMES),
            "you_words": _vocabulary_size(self.you_words_),
            "you_chars": _vocabulary_size(self.you_chars_),
        }
        self.n_features_out_ = sum(self.block_sizes_.values())
        return self

    def block_columns(self, names: Iterable[str]) -> np.ndarray:
        """The column indices of the named blocks (`BLOCKS`), in column order."""
        wanted = set(names)
        unknown = wanted - set(BLOCKS)
        if unknown:
            raise ValueError(f"unknown feature blocks {sorted(unknown)}; known: {BLOCKS}")
        columns: list[np.ndarray] = []
        offset = 0
        for name in BLOCKS:
            size = self.block_sizes_[name]
            if name in wanted:
                columns.append(np.arange(offset, offset + size, dtype=np.int64))
            offset += size
        return np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """One row per text."""
        docs = _as_list(texts)
        normalised = [normalise(text) for text in docs]
        # models pickled before the fuzzy lexicon have no `lexicon_`: the exact one
        lexicon = getattr(self, "lexicon_", is_insult_word)
        your_copula = getattr(self, "your_copula", False)
        marked = [
            addressee_tokens(text, self.window, self.back, lexicon, your_copula) for text in docs
        ]
        out = _Rows(len(docs))
        # build_analyzer() would call normalise() once per vectorizer: n-gram the normalised
        # text directly instead (the same n-grams, one normalisation).
        offset = _ngram_rows(self.words_, self.chars_, normalised, 0, out)
        _tfidf_rows(self.addressee_, marked, offset, out)
        offset += len(self.addressee_.vocabulary_)
        for row, tokens_of_row in enumerate(marked):
            counts = np.asarray(person_counts_of(tokens_of_row), dtype=np.float64)
            nonzero = np.flatnonzero(counts)
            out.add(row, nonzero + offset, counts[nonzero])
        offset += len(PERSON_COUNT_NAMES)
        if self.you_words_ is not None or self.you_chars_ is not None:
            addressed = [you_sentences(text) for text in docs]
            _ngram_rows(self.you_words_, self.you_chars_, addressed, offset, out)
        return out.matrix(self.n_features_out_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """`w:`, `c:`, `a:` prefixed n-grams / tokens, `PERSON_COUNT_NAMES`, `yw:`, `yc:`."""
        names = [f"w:{n}" for n in self.words_.get_feature_names_out()]
        names += [f"c:{n}" for n in self.chars_.get_feature_names_out()]
        names += [f"a:{n}" for n in self.addressee_.get_feature_names_out()]
        names += list(PERSON_COUNT_NAMES)
        for prefix, vectorizer in (("yw", self.you_words_), ("yc", self.you_chars_)):
            if vectorizer is not None:
                names += [f"{prefix}:{n}" for n in vectorizer.get_feature_names_out()]
        return np.asarray(names, dtype=object)


def _fit_or_none(vectorizer: TfidfVectorizer, docs: list[str]) -> TfidfVectorizer | None:
    """`vectorizer.fit(docs)`, or None when `docs` yield no n-gram kept by `min_df` (a tiny
    training set where too few texts address anyone): the block then has no columns."""
    try:
        return vectorizer.fit(docs)
    except ValueError:  # "empty vocabulary" / "no terms remain"
        return None


def _vocabulary_size(vectorizer: TfidfVectorizer | None) -> int:
    return 0 if vectorizer is None else len(vectorizer.vocabulary_)


def _ngram_rows(
    words: TfidfVectorizer | None,
    chars: TfidfVectorizer | None,
    texts: list[str],
    offset: int,
    out: _Rows,
) -> int:
    """Add the word then char_wb n-gram TF-IDF rows of already normalised `texts` at
    `offset` (a None vectorizer: no columns); the offset after both blocks."""
    if words is not None:
        word_tokenise = words.build_tokenizer()
        _tfidf_rows(words, [words._word_ngrams(word_tokenise(t)) for t in texts], offset, out)
        offset += len(words.vocabulary_)
    if chars is not None:
        _tfidf_rows(chars, [chars._char_wb_ngrams(t) for t in texts], offset, out)
        offset += len(chars.vocabulary_)
    return offset


class NBScaler(BaseEstimator, TransformerMixin):
    """Scale each column by its naive-Bayes log-count ratio (Wang & Manning 2012, "NBSVM").

    `r_j = log((p_j / |p|) / (q_j / |q|))` with `p_j` (`q_j`) the number of positive (negative)
    training rows where column j is non-zero, plus `alpha`. A linear model on `X * r` starts from
    the naive-Bayes evidence of each feature instead of from zero.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: sp.spmatrix, y: Any) -> NBScaler:
        """Learn the ratios from binary presence of each column in each class."""
        labels = np.asarray(y)
        classes = np.unique(labels)
        if len(classes) != 2:
            raise ValueError(f"NBScaler needs two classes, got {list(classes)}")
        # the positive class is the larger label, as `classes_[1]` of a classifier
        is_positive = labels == classes[1]
        present = sp.csr_matrix(X, dtype=np.float64)
        present.data = (present.data != 0).astype(np.float64)
        positive = np.asarray(present[is_positive].sum(axis=0)).ravel() + self.alpha
        negative = np.asarray(present[~is_positive].sum(axis=0)).ravel() + self.alpha
        self.ratios_ = np.log((positive / positive.sum()) / (negative / negative.sum()))
        return self

    def transform(self, X: sp.spmatrix) -> sp.csr_matrix:
        """`X` with each column multiplied by its ratio."""
        scaled = sp.csr_matrix(X, dtype=np.float64, copy=True)
        scaled.data *= self.ratios_[scaled.indices]  # O(non-zeros), not O(columns)
        return scaled


# The members of the abuse ensemble: (feature blocks, C of the member's logistic regression),
# chosen by 5-fold stratified CV on the insults train.csv (modstack/policies/abuse/DATA.md):
# one model on everything plus one per kind of evidence, so that the many char n-grams do not
# drown out the addressee tokens or the you-sentences.
ABUSE_MEMBERS: tuple[tuple[tuple[str, ...], float], ...] = (
    (BLOCKS, 1.0),
    (("words",), 3.0),
    (("chars",), 1.0),
    (("addressee", "counts"), 1.0),
    (("you_words", "you_chars"), 1.0),
)


class AddresseeEnsemble(BaseEstimator, ClassifierMixin):
    """`AbuseFeatures`, then one naive-Bayes-scaled logistic regression per member (a subset of
    the feature blocks), their logits averaged: P(abuse) = expit(mean of the members' logits).

    Every member is linear in the features, so the average is one linear model: after `fit`
    the members are folded into `coef_` / `intercept_` over all columns (`NBScaler` ratio
    times the member's weights, zero outside its blocks, divided by the number of members) and
    scoring a text is one sparse dot product, whatever the number of members.

    `folds` > 1 cross-fits: the features are fitted once on all texts (vocabularies, IDF and
    the fuzzy lexicon's known words: no label is read), the members on each of `folds`
    stratified folds' training rows, and the served model is the mean of the fold models
    (still one linear model over the shared features, fitted on every row). `oof_decision_`
    holds each text's logit from the fold model that did not see its label: cut-offs placed on
    these are statements about scores of texts the model never learnt from.
    """

    def __init__(
        self,
        members: tuple[tuple[tuple[str, ...], float], ...] = ABUSE_MEMBERS,
        features: AbuseFeatures | None = None,
        alpha: float = 1.0,
        max_iter: int = 5000,
        random_state: int = 0,
        folds: int = 0,
    ) -> None:
        self.members = members
        self.features = features
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state
        self.folds = folds

    def fit(self, texts: Iterable[str], y: Any) -> AddresseeEnsemble:
        """Fit the features, then each member on its blocks; fold them into one linear model
        (with `folds` > 1: one per fold, averaged, and the out-of-fold logits kept)."""
        docs = _as_list(texts)
        labels = np.asarray(y)
        features = self.features if self.features is not None else AbuseFeatures()
        self.features_ = clone(features).fit(docs)
        X = self.features_.transform(docs)
        if self.folds <= 1:
            self.coef_, self.intercept_ = self._fit_members(X, labels)
            return self
        splits = StratifiedKFold(self.folds, shuffle=True, random_state=self.random_state)
        oof = np.zeros(len(docs), dtype=np.float64)
        coefs, intercepts = [], []
        for fit_rows, held in splits.split(np.zeros(len(labels)), labels):
            coef, intercept = self._fit_members(X[fit_rows], labels[fit_rows])
            oof[held] = np.asarray(X[held] @ coef).ravel() + intercept
            coefs.append(coef)
            intercepts.append(intercept)
        self.coef_ = np.mean(coefs, axis=0)
        self.intercept_ = float(np.mean(intercepts))
        self.oof_decision_ = oof
        return self

    def cross_fitted(self) -> bool:
        """Whether `fit` cross-fits (and leaves `oof_decision_` for the cut-offs)."""
        return self.folds > 1

    def _fit_members(self, X: sp.csr_matrix, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """The members fitted on the rows of `X`, folded into (coefficients, intercept)."""
        coef = np.zeros(X.shape[1], dtype=np.float64)
        intercept = 0.0
        fitted = 0
        for blocks, C in self.members:
            columns = self.features_.block_columns(blocks)
            if columns.size == 0:
                continue  # a block left empty by a tiny training set
            part = X[:, columns]
            scaler = NBScaler(alpha=self.alpha).fit(part, labels)
            model = LogisticRegression(C=C, max_iter=self.max_iter, random_state=self.random_state)
            model.fit(scaler.transform(part), labels)
            coef[columns] += scaler.ratios_ * model.coef_[0]
            intercept += float(model.intercept_[0])
            fitted += 1
            self.classes_ = model.classes_
        if not fitted:
            raise ValueError("no ensemble member has any feature column")
        self.n_members_ = fitted
        return coef / fitted, intercept / fitted

    def decision_function(self, texts: Iterable[str]) -> np.ndarray:
        """The mean of the members' logits, one per text."""
        X = self.features_.transform(texts)
        return np.asarray(X @ self.coef_).ravel() + self.intercept_

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """`[1 - p, p]` per text, `p = expit(decision_function(texts))`."""
        positive = expit(self.decision_function(texts))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, texts: Iterable[str]) -> np.ndarray:
        """`classes_[1]` where the mean logit is positive, else `classes_[0]`."""
        return np.asarray(self.classes_)[(self.decision_function(texts) > 0).astype(int)]


def abuse_text_pipeline(seed: int = 0, folds: int = 0) -> Pipeline:
    """The abuse model: raw comment strings in, `predict_proba[:, 1]` = P(abuse) out.

    `AbuseFeatures` with the you-sentence blocks and the fuzzy lexicon (misspelt name-calling
    counts as name-calling), then `AddresseeEnsemble` over
    `ABUSE_MEMBERS`: naive-Bayes-scaled logistic regressions on all blocks, on the word
    n-grams, on the char n-grams, on the addressee tokens + person counts and on the
    you-sentences, their logits averaged. Deterministic for a given `seed`.
    """
    features = AbuseFeatures(you_sentences=True, fuzzy_lexicon=True)
    return Pipeline(
        [
            (
                "model",
                AddresseeEnsemble(ABUSE_MEMBERS, features=features, random_state=seed, folds=folds),
            )
        ]
    )
