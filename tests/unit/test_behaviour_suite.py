"""The behavioural suite runner (pipelines/behaviour.py) with a fake keyword scorer: loading and
validating cases.yaml, counting, the MFT pass rules, INV action flips, DIR epsilon, metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.behaviour import (
    CASES_ENV,
    DEFAULT_CASES_PATH,
    DIR,
    INV,
    MFT_ALLOWED,
    MFT_NOT_ALLOWED,
    BehaviourCasesError,
    Decision,
    Message,
    Perturbation,
    Text,
    load_cases,
    run_suite,
)

SPAM_WORDS = ("prize", "viagra", "bit.ly", "lottery", "claim")


class KeywordScorer:
    """0.4 per spam word found (case-insensitive), capped at 1; block >= 0.8, review >= 0.4.
    Records every batch it is called with."""

    def __init__(self, case_sensitive: bool = False, per_word: float = 0.4) -> None:
        self.case_sensitive = case_sensitive
        self.per_word = per_word
        self.calls: list[list[Message]] = []

    def score(self, m: Message) -> float:
        text = f"{m.subject} {m.body}"
        text = text if self.case_sensitive else text.lower()
        return min(1.0, self.per_word * sum(w in text for w in SPAM_WORDS))

    def __call__(self, messages: Sequence[Message]) -> list[Decision]:
        self.calls.append(list(messages))
        out = []
        for m in messages:
            s = self.score(m)
            out.append(Decision(s, "block" if s >= 0.8 else "review" if s >= 0.4 else "allow"))
        return out


def mft(case_id: str, body: str, capability: str = "cap", subject: str = "") -> dict[str, Any]:
    return {"id": case_id, "capability": capability, "subject": subject, "body": body}


def pert(case_id: str, body: str, perturbation: str, label: str = "ham") -> dict[str, Any]:
    return {**mft(case_id, body), "perturbation": perturbation, "label": label}


def suite_doc(
    allowed: list[dict] | None = None,
    not_allowed: list[dict] | None = None,
    inv: list[dict] | None = None,
    dir_: list[dict] | None = None,
    epsilon: float = 0.01,
) -> dict[str, Any]:
    return {
        "version": 1,
        "default_sender_domain": "example.com",
        "mft": {
            "allowed": {
                "fails_on_action": "block",
                "max_failure_rate": 0.0,
                "cases": allowed or [],
            },
            "not_allowed": {
                "fails_on_action": "allow",
                "max_failure_rate": 0.10,
                "cases": not_allowed or [],
            },
        },
        "inv": {
            "max_failures": 0,
            "perturbations": {
                "upper_case": {"kind": "upper_case"},
                "sender_gmail": {"kind": "sender_domain", "domain": "gmail.com"},
                "append_sig": {"kind": "append", "text": "\n--\nAnna"},
            },
            "cases": inv or [],
        },
        "dir": {
            "epsilon": epsilon,
            "max_failures": 0,
            "perturbations": {"add_spam_url": {"kind": "append", "text": " http://bit.ly/3xYz"}},
            "cases": dir_ or [],
        },
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the real cases


def test_repo_cases_load_with_the_expected_sizes_and_unique_ids():
    suite = load_cases(DEFAULT_CASES_PATH)
    counts = suite.counts()
    assert counts[MFT_ALLOWED] >= 200
    assert counts[MFT_NOT_ALLOWED] >= 80
    assert counts[INV] >= 100
    assert counts[DIR] >= 40
    ids = [c.id for c in (*suite.allowed, *suite.not_allowed, *suite.inv, *suite.dir)]
    assert len(ids) == len(set(ids))
    assert suite.max_mft_failure_rate == {"allowed": 0.0, "not_allowed": 0.10}
    assert suite.dir_epsilon == pytest.approx(0.01)


def test_repo_cases_cover_the_required_perturbations_on_ham_and_spam_bases():
    suite = load_cases(DEFAULT_CASES_PATH)
    inv_kinds = {c.perturbation.kind for c in suite.inv}
    assert inv_kinds == {"sender_domain", "upper_case", "lower_case", "extra_whitespace", "append"}
    inv_names = {c.perturbation.name for c in suite.inv}
    assert {
        "append_signature",
        "append_quoted_reply",
        "sender_gmail",
        "sender_outlook",
    } <= inv_names
    assert {c.label for c in suite.inv} == {"ham", "spam"}
    assert {c.perturbation.name for c in suite.dir} == {"add_spam_url", "add_claim_prize"}
    capabilities = {c.capability for c in suite.allowed}
    assert {
        "greeting",
        "receipt",
        "short_reply",
        "quoted_reply",
        "non_english_german",
    } <= capabilities
    assert {"phishing", "obfuscation", "url_shortener"} <= {c.capability for c in suite.not_allowed}


def test_repo_cases_run_end_to_end_in_three_scorer_calls():
    suite = load_cases(DEFAULT_CASES_PATH)
    scorer = KeywordScorer()
    result = run_suite(suite, scorer)
    assert len(scorer.calls) == 3
    assert [len(c) for c in scorer.calls] == [
        len(suite.allowed) + len(suite.not_allowed),
        2 * len(suite.inv),
        2 * len(suite.dir),
    ]
    assert {t: result[t].total for t in result.results} == suite.counts()
    senders = [m.sender_id for batch in scorer.calls for m in batch]
    assert len(senders) == len(set(senders))


# --------------------------------------------------------------------------- loading


def test_env_var_overrides_the_default_cases_path(tmp_path, monkeypatch):
    path = write(tmp_path, suite_doc(allowed=[mft("a-1", "hello")]))
    monkeypatch.setenv(CASES_ENV, str(path))
    suite = load_cases()
    assert suite.path == path
    assert [c.id for c in suite.allowed] == ["a-1"]


def test_missing_cases_file_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CASES_ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml.*BEHAVIOUR_CASES"):
        load_cases()


def test_duplicate_case_ids_across_test_types_are_rejected(tmp_path):
    doc = suite_doc(allowed=[mft("x-1", "hi")], not_allowed=[mft("x-1", "win a prize")])
    with pytest.raises(BehaviourCasesError, match="duplicate case id 'x-1'"):
        load_cases(write(tmp_path, doc))


def test_unknown_perturbation_name_is_rejected(tmp_path):
    doc = suite_doc(inv=[pert("i-1", "hi", "reverse_words")])
    with pytest.raises(BehaviourCasesError, match="unknown perturbation 'reverse_words'"):
        load_cases(write(tmp_path, doc))


def test_case_without_body_and_bad_fail_action_are_rejected(tmp_path):
    with pytest.raises(BehaviourCasesError, match="no body"):
        load_cases(write(tmp_path, suite_doc(allowed=[{"id": "a", "capability": "c"}])))
    doc = suite_doc()
    doc["mft"]["allowed"]["fails_on_action"] = "delete"
    with pytest.raises(BehaviourCasesError, match="fails_on_action"):
        load_cases(write(tmp_path, doc))


def test_missing_subject_and_sender_domain_fall_back_to_defaults(tmp_path):
    suite = load_cases(
        write(tmp_path, suite_doc(allowed=[{"id": "a", "capability": "c", "body": "b"}]))
    )
    assert suite.allowed[0].text == Text("", "b", "example.com")


# --------------------------------------------------------------------------- perturbations


def test_perturbations_edit_the_message_as_named():
    text = Text("Lunch plan", "see you at noon\nbring cake", "acme.com")
    assert Perturbation("u", "upper_case").apply(text).body == "SEE YOU AT NOON\nBRING CAKE"
    assert Perturbation("u", "upper_case").apply(text).subject == "LUNCH PLAN"
    assert Perturbation("l", "lower_case").apply(text).subject == "lunch plan"
    moved = Perturbation("g", "sender_domain", {"domain": "gmail.com"}).apply(text)
    assert (moved.sender_domain, moved.body) == ("gmail.com", text.body)
    signed = Perturbation("s", "append", {"text": "\n--\nAnna"}).apply(text)
    assert signed.body == "see you at noon\nbring cake\n--\nAnna"
    spread = Perturbation("w", "extra_whitespace").apply(text)
    assert spread.body != text.body
    assert spread.body.split() == text.body.split()
    assert spread.subject.split() == text.subject.split()


# --------------------------------------------------------------------------- MFT rules


def test_allowed_case_fails_only_when_blocked_and_reviews_are_counted(tmp_path):
    doc = suite_doc(
        allowed=[
            mft("a-allow", "see you at five"),
            mft("a-review", "the prize quiz is on friday"),  # 0.4 -> review
            mft("a-block", "claim the lottery prize"),  # 1.0 -> block
            mft("a-allow-2", "thanks!"),
        ]
    )
    result = run_suite(load_cases(write(tmp_path, doc)), KeywordScorer())
    allowed = result[MFT_ALLOWED]
    assert allowed.total == 4
    assert [f.case_id for f in allowed.failures] == ["a-block"]
    assert allowed.failures[0].action == "block"
    assert allowed.failures[0].expected == "not block"
    assert allowed.failure_rate == pytest.approx(0.25)
    assert allowed.review_count == 1
    assert allowed.review_share == pytest.approx(0.25)
    assert not result.passed()
    assert result.passed(max_mft_failure_rate={"allowed": 0.25})


def test_not_allowed_passes_at_ten_percent_allowed_through_and_fails_above(tmp_path):
    spam = [mft(f"s-{i}", "claim your lottery prize") for i in range(9)]
    one_missed = suite_doc(not_allowed=[*spam, mft("s-missed", "hello there")])
    result = run_suite(load_cases(write(tmp_path, one_missed)), KeywordScorer())
    assert result[MFT_NOT_ALLOWED].failure_rate == pytest.approx(0.10)
    assert [f.case_id for f in result[MFT_NOT_ALLOWED].failures] == ["s-missed"]
    assert result.passed()
    assert not result.passed(max_mft_failure_rate={"not_allowed": 0.05})

    two_missed = suite_doc(not_allowed=[*spam[:8], mft("m-1", "hi"), mft("m-2", "ok")])
    result = run_suite(load_cases(write(tmp_path, two_missed)), KeywordScorer())
    assert result[MFT_NOT_ALLOWED].failure_rate == pytest.approx(0.20)
    assert result.gate_violations() == ["mft_not_allowed: failure rate 0.200 (2/10) > 0.100"]


def test_review_counts_as_not_allowed_for_spam(tmp_path):
    doc = suite_doc(not_allowed=[mft("s-review", "a prize for you")])  # 0.4 -> review
    result = run_suite(load_cases(write(tmp_path, doc)), KeywordScorer())
    assert result[MFT_NOT_ALLOWED].failures == ()
    assert result[MFT_NOT_ALLOWED].review_share == pytest.approx(1.0)


def test_unknown_mft_type_in_the_override_is_an_error(tmp_path):
    result = run_suite(load_cases(write(tmp_path, suite_doc())), KeywordScorer())
    with pytest.raises(ValueError, match="unknown MFT types"):
        result.passed(max_mft_failure_rate={"alowed": 0.1})


# --------------------------------------------------------------------------- INV


def test_inv_flags_an_action_flip_but_not_a_score_change_within_the_same_action(tmp_path):
    doc = suite_doc(
        inv=[
            pert("i-flip", "claim your prize", "upper_case", label="spam"),  # block -> allow
            pert("i-same", "see you at five", "upper_case"),  # allow -> allow
            pert("i-sig", "a prize", "append_sig"),  # review -> review
            pert("i-domain", "claim your prize", "sender_gmail", label="spam"),
        ]
    )
    scorer = KeywordScorer(case_sensitive=True)
    result = run_suite(load_cases(write(tmp_path, doc)), scorer)
    inv = result[INV]
    assert inv.total == 4
    assert [f.case_id for f in inv.failures] == ["i-flip"]
    flip = inv.failures[0]
    assert (flip.base_action, flip.action) == ("block", "allow")
    assert flip.perturbation == "upper_case"
    assert flip.body == "CLAIM YOUR PRIZE"
    assert flip.base_body == "claim your prize"
    assert flip.expected == "action block"
    assert not result.passed()
    assert result.passed(max_inv_failures=1)


def test_inv_sender_domain_perturbation_reaches_the_scorer_and_senders_are_fresh(tmp_path):
    doc = suite_doc(inv=[pert("i-domain", "hello", "sender_gmail")])
    scorer = KeywordScorer()
    run_suite(load_cases(write(tmp_path, doc)), scorer, sender_prefix="run1")
    ((base, perturbed),) = scorer.calls  # no MFT or DIR cases: one call, for INV
    assert base.sender_id == "run1-i-domain-base@example.com"
    assert perturbed.sender_id == "run1-i-domain-perturbed@gmail.com"
    scorer2 = KeywordScorer()
    run_suite(load_cases(write(tmp_path, doc)), scorer2)
    assert scorer2.calls[0][0].sender_id != base.sender_id


# --------------------------------------------------------------------------- DIR


class DroppingScorer(KeywordScorer):
    """Lowers the score by `drop` when a bit.ly link is present (a misbehaving model)."""

    def __init__(self, drop: float) -> None:
        super().__init__()
        self.drop = drop

    def score(self, m: Message) -> float:
        base = 0.5
        return base - self.drop if "bit.ly" in m.body else base


@pytest.mark.parametrize(
    "drop, fails", [(0.0, False), (0.005, False), (0.0099, False), (0.02, True), (0.3, True)]
)
def test_dir_fails_only_when_the_score_drops_by_more_than_epsilon(tmp_path, drop, fails):
    doc = suite_doc(dir_=[pert("d-1", "see you at noon", "add_spam_url")], epsilon=0.01)
    result = run_suite(load_cases(write(tmp_path, doc)), DroppingScorer(drop))
    assert (result[DIR].failure_count == 1) is fails
    assert result.passed() is not fails
    if fails:
        failure = result[DIR].failures[0]
        assert failure.base_score == pytest.approx(0.5)
        assert failure.score == pytest.approx(0.5 - drop)
        assert failure.body == "see you at noon http://bit.ly/3xYz"


def test_dir_passes_when_the_spam_url_raises_the_score(tmp_path):
    doc = suite_doc(dir_=[pert("d-1", "see you at noon", "add_spam_url")])
    result = run_suite(load_cases(write(tmp_path, doc)), KeywordScorer())
    assert result[DIR].total == 1
    assert result[DIR].failures == ()


# --------------------------------------------------------------------------- reporting


def test_metrics_have_the_mlflow_names_and_values(tmp_path):
    doc = suite_doc(
        allowed=[mft("a-1", "hi"), mft("a-2", "a prize draw at school")],
        not_allowed=[mft("s-1", "claim your prize"), mft("s-2", "hello")],
        inv=[pert("i-1", "hi", "upper_case")],
        dir_=[pert("d-1", "hi", "add_spam_url")],
    )
    metrics = run_suite(load_cases(write(tmp_path, doc)), KeywordScorer()).as_metrics()
    assert metrics == {
        "behaviour_mft_allowed_total": 2.0,
        "behaviour_mft_allowed_failures": 0.0,
        "behaviour_mft_allowed_failure_rate": 0.0,
        "behaviour_mft_allowed_review_share": 0.5,
        "behaviour_mft_not_allowed_total": 2.0,
        "behaviour_mft_not_allowed_failures": 1.0,
        "behaviour_mft_not_allowed_failure_rate": 0.5,
        "behaviour_mft_not_allowed_review_share": 0.0,
        "behaviour_inv_total": 1.0,
        "behaviour_inv_failures": 0.0,
        "behaviour_inv_failure_rate": 0.0,
        "behaviour_dir_total": 1.0,
        "behaviour_dir_failures": 0.0,
        "behaviour_dir_failure_rate": 0.0,
    }


def test_failures_table_rows_share_keys_and_serialise_to_json(tmp_path):
    doc = suite_doc(
        allowed=[mft("a-block", "claim the lottery prize")],
        inv=[pert("i-flip", "claim your prize", "upper_case")],
    )
    result = run_suite(load_cases(write(tmp_path, doc)), KeywordScorer(case_sensitive=True))
    table = result.failures_table()
    assert [(r["test"], r["case_id"]) for r in table] == [
        (MFT_ALLOWED, "a-block"),
        (INV, "i-flip"),
    ]
    assert len({tuple(r) for r in table}) == 1
    assert table[0]["base_action"] is None
    assert table[1]["base_action"] == "block"
    assert json.loads(json.dumps(table)) == table


def test_empty_suite_makes_no_scorer_calls_and_passes(tmp_path):
    scorer = KeywordScorer()
    result = run_suite(load_cases(write(tmp_path, suite_doc())), scorer)
    assert scorer.calls == []
    assert result.passed()
    assert all(r.failure_rate == 0.0 for r in result.results.values())


def test_scorer_returning_the_wrong_number_of_decisions_is_an_error(tmp_path):
    doc = suite_doc(allowed=[mft("a-1", "hi"), mft("a-2", "yo")])
    with pytest.raises(ValueError, match="1 decisions for 2 messages"):
        run_suite(load_cases(write(tmp_path, doc)), lambda ms: [Decision(0.1, "allow")])


def test_scorer_returning_an_unknown_action_is_an_error(tmp_path):
    doc = suite_doc(allowed=[mft("a-1", "hi")])
    with pytest.raises(ValueError, match="invalid decision"):
        run_suite(load_cases(write(tmp_path, doc)), lambda ms: [Decision(0.1, "spam")])  # type: ignore[arg-type]
