"""The two model definitions: the candidate (cleaned text -> word + char_wb TF-IDF -> logistic
regression, abstention cap, additive sender-history LightGBM) and the baseline (TF-IDF
1-2-grams -> logistic regression). See docs/training.md for why.

Both `predict_proba` take the model-contract DataFrame (`model_input`: subject, body, feature
columns; NaN where a feature is missing) and return [P(ham), P(spam)]. Text preparation is in
`pipelines.text_cleaning`, the hyper-parameters in `pipelines.model_config`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from modstack.registry.contract import TEXT_COLUMNS
from pipelines.model_config import MONOTONE_SENDER, SENDER_PREFIX, ModelConfig
from pipelines.text_cleaning import CleanText, HeadLower, JoinText, clean_text, crop_windows


class AsFloat(TransformerMixin, BaseEstimator):
    """Feature columns as float64 with NaN for missing (Feast returns None for unknown senders);
    LightGBM routes NaN down its learned missing-value branch."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> AsFloat:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        return X.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> npt.NDArray[np.object_]:
        return self.feature_names_in_


# `ModelConfig.head_crops` -> the labels whose mails give `head_rows`
_HEAD_CLASSES: dict[str, tuple[int, ...]] = {"spam": (1,), "mail": (0, 1)}

# log-odds between the abstention cap and `block`: a capped score lands in the review band
ABSTAIN_MARGIN = 0.25


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _ramp(known: npt.NDArray[np.int_], low: int, high: int) -> npt.NDArray[np.float64]:
    """0 below `low` known word n-grams, 1 from `high`, linear in between (blend and cap)."""
    return np.clip((known - low) / max(high - low, 1), 0.0, 1.0)


def _regression(
    cfg: ModelConfig,
    x: sp.csr_matrix,
    y: npt.NDArray[np.int_],
    w: npt.NDArray[np.float64],
    c: float | None = None,
) -> LogisticRegression:
    lr = LogisticRegression(
        C=cfg.lr_c if c is None else c, max_iter=3_000, solver="liblinear", random_state=cfg.seed
    )
    return lr.fit(x, y, sample_weight=w)


def _mean_model(fits: Sequence[LogisticRegression]) -> tuple[npt.NDArray[np.float64], float]:
    """One linear model from cross-fitted ones: the mean of their coefficients and intercepts."""
    coef = np.mean([lr.coef_.ravel() for lr in fits], axis=0)
    return coef, float(np.mean([float(lr.intercept_[0]) for lr in fits]))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HEAD_MIN_WORDS = 4


def head_rows(
    X: pd.DataFrame,
    labels: npt.NDArray[np.int_],
    rows: npt.NDArray[np.bool_],
    cfg: ModelConfig,
) -> tuple[list[str], npt.NDArray[np.int_], npt.NDArray[np.int_]]:
    """Short messages cut from the top of the `rows` (mails): the cleaned subject alone and the
    body's first sentences (until `HEAD_MIN_WORDS` words, at most `head_max_words`), each with
    its mail's label. A spam mail's subject and opening line are what a short spam says
    ("Get your free quote today!"); without them the only short spam the short-text model sees
    are random windows, and short everyday text (the comments) reads as ham by its length.

    Returns (texts, labels, index of the source row), like `crop_windows`.
    """
    texts: list[str] = []
    out_y: list[int] = []
    source: list[int] = []
    subjects = X["subject"].tolist()
    bodies = X["body"].tolist()
    for i in np.flatnonzero(rows):
        subject = clean_text(subjects[i], "", cfg.max_body_chars, cfg.strip_replies)
        body = clean_text("", bodies[i], cfg.max_body_chars, cfg.strip_replies)
        head: list[str] = []
        for sentence in _SENTENCE_END.split(body):
            head.extend(sentence.split())
            if len(head) >= HEAD_MIN_WORDS:
                break
        for text in (subject, " ".join(head[: cfg.head_max_words])):
            if len(text.split()) >= 2:
                texts.append(text)
                out_y.append(int(labels[i]))
                source.append(int(i))
    return texts, np.asarray(out_y, dtype=int), np.asarray(source, dtype=int)


# ---- the candidate ------------------------------------------------------------------------------


class TextPlusSenderClassifier(ClassifierMixin, BaseEstimator):
    """Cleaned text -> word 1-2 + char_wb 2-5 TF-IDF -> two logistic regressions (short texts,
    long texts), capped below `block` when the text carries little known evidence, plus an
    additive sender-history correction.

    - Two text models on the same features: the short-text model is trained on every message
      (mails and comments) and crops of them (so "short and plain" is evidence of neither
      class), with `head_crops` also on the mails' subjects and opening sentences
      (`head_rows`), with its own, stronger regularisation (`short_lr_c`); the long-text
      model on the mails alone (`long_model_mail_only`: rows with a subject; crops and the
      subject-less comments cost it ranking on long mail). A text's log-odds are the short
      model's below `blend_min_known` known word n-grams, the long model's from
      `blend_max_known`, a linear mix in between. Whether a row has a subject only selects
      training rows, never a score.
    - Cross-fitting: `folds` pairs of regressions give out-of-fold text log-odds (the sender
      booster's init_score); each served model is the mean of its folds, one linear model.
    - Sender correction: LightGBM boosted from the out-of-fold log-odds on rows whose sender
      has history. A sender the online store never saw (every sender_* column NaN) gets
      exactly the text score: absence of history is not evidence of spam.
    - Abstention: once the thresholds are known (`abstain_below(block)`), below
      `abstain_min_known` known word n-grams the text log-odds stay under `block`, the evidence
      above the cap fading back in up to `abstain_max_known`: little known evidence goes to
      review, not to block. A cap just below `block` rather than at 0.5 keeps the ranking
      (validation PR-AUC and recall at precision 0.99 as without a cap, docs/training.md).

    Hand-written rather than a Pipeline because the out-of-fold log-odds feed the booster as
    its init_score (no sklearn step expresses that), and one row must score in < 5 ms: no
    ColumnTransformer or per-call validation. Deterministic for a seed (fixed folds and crops,
    liblinear with random_state, LightGBM deterministic on one thread).

    Serving: everything that depends only on the fitted model is computed in `fit`; per call
    `clean_text`, two fixed-vocabulary transforms, two sparse dots, and the booster only for
    warm rows. `predict_proba` is already that path (nothing to prepare).
    """

    def __init__(self, feature_columns: Sequence[str] = (), config: ModelConfig | None = None):
        self.feature_columns = feature_columns
        self.config = config

    def _vectorizers(self, cfg: ModelConfig) -> tuple[TfidfVectorizer, TfidfVectorizer]:
        word = TfidfVectorizer(
            ngram_range=(1, 2),
            min_df=cfg.word_min_df,
            max_features=cfg.word_max_features,
            sublinear_tf=True,
            dtype=np.float64,
        )
        char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(cfg.char_ngram_min, cfg.char_ngram_max),
            min_df=cfg.char_min_df,
            max_features=cfg.char_max_features,
            sublinear_tf=True,
            dtype=np.float64,
            preprocessor=HeadLower(cfg.char_max_chars),
        )
        return word, char

    def _matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.hstack([self.word_.transform(texts), self.char_.transform(texts)], format="csr")

    def fit(self, X: pd.DataFrame, y: Any) -> TextPlusSenderClassifier:
        """Fit on the model-contract frame `X` and 0/1 labels `y`."""
        cfg = self.config or ModelConfig()
        labels: npt.NDArray[np.int_] = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.cleaner_ = CleanText(cfg.max_body_chars, cfg.strip_replies)
        texts = list(self.cleaner_.transform(X))
        # mails carry a subject; the messaging-style rows (comments) have none
        mail = X["subject"].fillna("").astype(str).str.strip().ne("").to_numpy()
        self.word_, self.char_ = self._vectorizers(cfg)
        # vocabularies and idf from the real texts only (crops would repeat their n-grams)
        vocab_texts = texts
        if cfg.vocab_mail_only:
            vocab_texts = [text for text, is_mail in zip(texts, mail, strict=True) if is_mail]
        self.word_.fit(vocab_texts)
        self.char_.fit(vocab_texts)
        self.n_word_ = len(self.word_.vocabulary_)
        self.blend_known_ = (cfg.blend_min_known, cfg.blend_max_known)
        self.abstain_known_ = (cfg.abstain_min_known, cfg.abstain_max_known)
        self.abstain_logit_ = np.inf  # no cap until the thresholds are known
        heads = (
            head_rows(X, labels, mail & np.isin(labels, _HEAD_CLASSES[cfg.head_crops]), cfg)
            if cfg.head_crops
            else None
        )
        oof = self._fit_text_models(cfg, texts, labels, mail, heads)
        self.sender_columns_ = [c for c in self.feature_columns if c.startswith(SENDER_PREFIX)]
        self.booster_ = self._fit_sender_booster(cfg, X, labels, oof)
        return self

    def _fit_text_models(
        self,
        cfg: ModelConfig,
        texts: list[str],
        labels: npt.NDArray[np.int_],
        mail: npt.NDArray[np.bool_],
        heads: tuple[list[str], npt.NDArray[np.int_], npt.NDArray[np.int_]] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Cross-fit the short- and long-text regressions (`folds` pairs); keep the mean model
        of each and return the out-of-fold mixed text log-odds. The short-text model also
        learns from crops of every text and from `heads` (`head_rows`), each with its source
        row's fold."""
        x_orig = self._matrix(texts)
        known = np.diff(x_orig[:, : self.n_word_].indptr)
        crops, crop_y, crop_src = crop_windows(
            texts, labels, cfg.crops_per_text, cfg.crop_min_words, cfg.crop_max_words, cfg.seed
        )
        spam_crop = cfg.crop_weight if cfg.spam_crop_weight < 0 else cfg.spam_crop_weight
        crop_w = np.where(crop_y == 1, spam_crop, cfg.crop_weight).astype(np.float64)
        if heads is not None:
            crops = [*crops, *heads[0]]
            crop_y = np.concatenate([crop_y, heads[1]])
            crop_src = np.concatenate([crop_src, heads[2]])
            crop_w = np.concatenate([crop_w, np.full(len(heads[0]), cfg.head_weight)])
        x_crop = self._matrix(crops) if crops else sp.csr_matrix((0, x_orig.shape[1]))
        oof = np.zeros(len(labels))
        short_fits: list[LogisticRegression] = []
        long_fits: list[LogisticRegression] = []
        folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
        for fit_rows, held in folds.split(np.zeros(len(labels)), labels):
            in_fold = np.isin(crop_src, fit_rows)
            xf = sp.vstack([x_orig[fit_rows], x_crop[in_fold]], format="csr")
            yf = np.concatenate([labels[fit_rows], crop_y[in_fold]])
            wf = np.concatenate([np.ones(len(fit_rows)), crop_w[in_fold]])
            wf = wf * np.where(yf == 1, cfg.spam_weight, 1.0)
            short_c = cfg.short_lr_c if cfg.short_lr_c > 0 else None
            short_fits.append(_regression(cfg, xf, yf, wf, short_c))
            if cfg.blend_max_known > 0:
                long_rows = fit_rows
                mail_rows = fit_rows[mail[fit_rows]]
                if cfg.long_model_mail_only and len(np.unique(labels[mail_rows])) == 2:
                    long_rows = mail_rows
                ones = np.where(labels[long_rows] == 1, cfg.spam_weight, 1.0)
                long_fits.append(_regression(cfg, x_orig[long_rows], labels[long_rows], ones))
            held_short = short_fits[-1].decision_function(x_orig[held])
            held_long = long_fits[-1].decision_function(x_orig[held]) if long_fits else None
            oof[held] = self._mixed(held_short, held_long, known[held])
        self.coef_, self.intercept_ = _mean_model(short_fits)
        self.coef_long_: npt.NDArray[np.float64] | None = None
        self.intercept_long_ = 0.0
        if long_fits:
            self.coef_long_, self.intercept_long_ = _mean_model(long_fits)
        return oof

    def _fit_sender_booster(
        self,
        cfg: ModelConfig,
        X: pd.DataFrame,
        labels: npt.NDArray[np.int_],
        oof: npt.NDArray[np.float64],
    ) -> lightgbm.Booster | None:
        """LightGBM boosted from the out-of-fold text log-odds on rows whose sender has
        history; None without sender columns or too few such rows of both classes."""
        if not (cfg.sender_model and self.sender_columns_):
            return None
        senders = self._sender_values(X)
        warm = ~np.isnan(senders).all(axis=1)
        if warm.sum() < 50 or len(np.unique(labels[warm])) != 2:
            return None
        params = {
            "objective": "binary",
            "learning_rate": cfg.lgbm_learning_rate,
            "num_leaves": cfg.lgbm_num_leaves,
            "min_data_in_leaf": cfg.lgbm_min_child_samples,
            "seed": cfg.seed,
            "deterministic": True,
            "force_col_wise": True,
            # one thread: OpenMP threads spin-wait on a shared 2-core machine
            "num_threads": 1,
            "verbose": -1,
            "monotone_constraints": [MONOTONE_SENDER.get(c, 0) for c in self.sender_columns_],
        }
        data = lightgbm.Dataset(senders[warm], labels[warm], init_score=oof[warm])
        return lightgbm.train(params, data, num_boost_round=cfg.lgbm_n_estimators)

    def abstain_below(self, block: float) -> None:
        """Cap low-evidence texts just below the `block` cut-off (ABSTAIN_MARGIN in log-odds)."""
        if self.abstain_known_[0] > 0 and 0.0 < block < 1.0:
            self.abstain_logit_ = _logit(block) - ABSTAIN_MARGIN

    def top_weights(self, n: int = 15) -> dict[str, list[tuple[str, float]]]:
        """What carries the score: the `n` most spam-ward and ham-ward n-grams of each text
        model (coefficient on the TF-IDF feature) and the sender booster's gain per column."""
        names = np.concatenate(
            [
                self.word_.get_feature_names_out(),
                np.char.add("char:", self.char_.get_feature_names_out().astype(str)),
            ]
        )
        out: dict[str, list[tuple[str, float]]] = {}
        models = {"short-text model": self.coef_, "long-text model": self.coef_long_}
        for name, coef in models.items():
            if coef is None:
                continue
            order = np.argsort(coef)
            picked = [*order[:n], *order[-n:]]
            out[name] = [(str(names[i]), float(coef[i])) for i in picked]
        if self.booster_ is not None:
            gain = self.booster_.feature_importance(importance_type="gain")
            out["sender booster (gain)"] = sorted(
                zip(self.sender_columns_, map(float, gain), strict=True), key=lambda kv: kv[1]
            )
        return out

    def _sender_values(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        # column by column: selecting a sub-frame costs ~0.8 ms per call, more than the booster
        columns = []
        for name in self.sender_columns_:
            values = X[name].to_numpy()
            if values.dtype.kind not in "fiu":  # strings / None in object columns
                values = pd.to_numeric(X[name], errors="coerce").to_numpy()
            columns.append(values.astype(np.float64, copy=False))
        return np.column_stack(columns) if columns else np.empty((len(X), 0))

    def _mixed(
        self,
        short: npt.NDArray[np.float64],
        long: npt.NDArray[np.float64] | None,
        known: npt.NDArray[np.int_],
    ) -> npt.NDArray[np.float64]:
        if long is None:
            return short
        share = _ramp(known, *self.blend_known_)
        return np.asarray((1.0 - share) * short + share * long, dtype=np.float64)

    def _capped(
        self, logit: npt.NDArray[np.float64], known: npt.NDArray[np.int_]
    ) -> npt.NDArray[np.float64]:
        # a cap, not a flattening: scores below it keep their order; above it the evidence
        # fades in between the two counts of known n-grams, so two words cannot reach `block`
        if self.abstain_known_[0] <= 0 or not np.isfinite(self.abstain_logit_):
            return logit
        factor = _ramp(known, *self.abstain_known_)
        cap = self.abstain_logit_
        return np.where(logit > cap, cap + factor * (logit - cap), logit)

    def text_logit(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Mixed and capped text log-odds of already cleaned texts."""
        w = self.word_.transform(texts)
        c = self.char_.transform(texts)
        n = self.n_word_
        short = w @ self.coef_[:n] + c @ self.coef_[n:] + self.intercept_
        long = None
        if self.coef_long_ is not None:
            long = w @ self.coef_long_[:n] + c @ self.coef_long_[n:] + self.intercept_long_
        known = np.diff(w.indptr)
        return self._capped(self._mixed(short, long, known), known)

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Log-odds of spam per row (text + sender correction for senders with history)."""
        logit = self.text_logit(list(self.cleaner_.transform(X)))
        if self.booster_ is not None:
            senders = self._sender_values(X)
            warm = ~np.isnan(senders).all(axis=1)
            if warm.any():
                # num_threads=1 at predict time too: LightGBM otherwise starts its OpenMP
                # pool per call, ~1 ms for one row against ~0.03 ms (measured)
                logit[warm] += self.booster_.predict(senders[warm], raw_score=True, num_threads=1)
        return logit

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """[P(ham), P(spam)] per row of the model-contract frame."""
        spam = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - spam, spam])

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int_]:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def build_candidate(
    feature_columns: Sequence[str], config: ModelConfig
) -> TextPlusSenderClassifier:
    """The candidate (unfitted); `fit(model_input(frame, columns), y)` then `predict_proba`."""
    return TextPlusSenderClassifier(list(feature_columns), config)


def build_baseline_pipeline(config: ModelConfig) -> Pipeline:
    """The baseline: TF-IDF word 1-2-grams over subject + body -> logistic regression."""
    return Pipeline(
        [
            ("join", JoinText(config.max_body_chars)),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            (
                "classifier",
                LogisticRegression(C=config.baseline_c, max_iter=2_000, random_state=config.seed),
            ),
        ]
    )


def model_input(frame: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """The columns a model version takes, in contract order (text first, then features)."""
    return frame[[*TEXT_COLUMNS, *feature_columns]]
