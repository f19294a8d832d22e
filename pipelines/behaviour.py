"""Behavioural test suites of the policies' classifiers, in the spirit of CheckList (Ribeiro et
al., ACL 2020): minimum functionality (MFT), invariance (INV) and directional (DIR) tests.

The cases live in each policy's folder (modstack/policies/<policy>/behaviour.yaml). The runner
is pure: it builds messages, calls a scorer (any callable from a batch of `Message` to a batch
of `Decision`) once per test kind, and compares. Wiring it to a model, MLflow or the serving
API is the caller's job.

    suite = load_cases()
    result = run_suite(suite, scorer)
    result.passed(), result.as_metrics(), result.failures_table()
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from modstack.policy import DEFAULT_POLICY, catalogue

Action = Literal["allow", "review", "block"]
ACTIONS: Final[tuple[str, ...]] = ("allow", "review", "block")

CASES_ENV: Final = "BEHAVIOUR_CASES"
DEFAULT_CASES_PATH: Final = catalogue().get(DEFAULT_POLICY).behaviour_suite

# Test types, in report order; also the keys of `SuiteResult.results`.
MFT_ALLOWED: Final = "mft_allowed"
MFT_NOT_ALLOWED: Final = "mft_not_allowed"
INV: Final = "inv"
DIR: Final = "dir"
TEST_TYPES: Final = (MFT_ALLOWED, MFT_NOT_ALLOWED, INV, DIR)

# Gate defaults when cases.yaml does not set them.
DEFAULT_MAX_MFT_FAILURE_RATE: Final[Mapping[str, float]] = {"allowed": 0.0, "not_allowed": 0.10}
DEFAULT_DIR_EPSILON: Final = 0.01

PERTURBATION_KINDS: Final = (
    "sender_domain",
    "upper_case",
    "lower_case",
    "extra_whitespace",
    "append",
)


class BehaviourCasesError(ValueError):
    """cases.yaml is malformed (the message names the file and the offending entry)."""


@dataclass(frozen=True)
class Message:
    """What the scorer sees. `sender_id` is fresh per message, so sender history never helps."""

    subject: str
    body: str
    sender_id: str


@dataclass(frozen=True)
class Decision:
    """The scorer's verdict on one message: P(spam) and the action its thresholds give."""

    score: float
    action: Action


Scorer = Callable[[Sequence[Message]], Sequence[Decision]]
"""Scores a batch; returns one decision per message, in order."""


@dataclass(frozen=True)
class Text:
    """A message as written in cases.yaml, before it gets a sender id."""

    subject: str
    body: str
    sender_domain: str


@dataclass(frozen=True)
class Perturbation:
    """A named, deterministic edit of a message (kind + parameters from cases.yaml)."""

    name: str
    kind: str
    params: Mapping[str, str] = field(default_factory=dict)

    def apply(self, text: Text) -> Text:
        """The perturbed copy of `text`."""
        if self.kind == "sender_domain":
            return Text(text.subject, text.body, self.params["domain"])
        if self.kind == "upper_case":
            return Text(text.subject.upper(), text.body.upper(), text.sender_domain)
        if self.kind == "lower_case":
            return Text(text.subject.lower(), text.body.lower(), text.sender_domain)
        if self.kind == "extra_whitespace":
            return Text(_spread(text.subject), _spread(text.body), text.sender_domain)
        if self.kind == "append":
            return Text(text.subject, text.body + self.params["text"], text.sender_domain)
        raise ValueError(f"unknown perturbation kind {self.kind!r}")


def _spread(s: str) -> str:
    """Double every space and newline, and pad the ends with whitespace."""
    if not s:
        return s
    return "  " + s.replace(" ", "  ").replace("\n", "\n\n") + " \n\n"


@dataclass(frozen=True)
class MftCase:
    """A minimum-functionality case: one message and the action it must not get."""

    id: str
    capability: str
    text: Text


@dataclass(frozen=True)
class PerturbationCase:
    """An INV or DIR case: a base message and the perturbation applied to it."""

    id: str
    capability: str
    label: str  # ham or spam: what the base message is
    base: Text
    perturbation: Perturbation

    @property
    def perturbed(self) -> Text:
        return self.perturbation.apply(self.base)


@dataclass(frozen=True)
class BehaviourSuite:
    """The loaded cases and the pass rules cases.yaml sets for them."""

    allowed: tuple[MftCase, ...]
    not_allowed: tuple[MftCase, ...]
    inv: tuple[PerturbationCase, ...]
    dir: tuple[PerturbationCase, ...]
    allowed_fails_on: str = "block"
    not_allowed_fails_on: str = "allow"
    max_mft_failure_rate: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MAX_MFT_FAILURE_RATE)
    )
    max_inv_failures: int = 0
    max_dir_failures: int = 0
    dir_epsilon: float = DEFAULT_DIR_EPSILON
    path: Path | None = None

    def counts(self) -> dict[str, int]:
        """Number of cases per test type."""
        return {
            MFT_ALLOWED: len(self.allowed),
            MFT_NOT_ALLOWED: len(self.not_allowed),
            INV: len(self.inv),
            DIR: len(self.dir),
        }

    def texts(self) -> set[str]:
        """Every body the suite scores (base and perturbed), e.g. to keep them out of training."""
        out = {c.text.body for c in (*self.allowed, *self.not_allowed)}
        for c in (*self.inv, *self.dir):
            out.update((c.base.body, c.perturbed.body))
        return out


# --------------------------------------------------------------------------- loading


def load_cases(path: Path | None = None) -> BehaviourSuite:
    """Read the suite from `path`, else $BEHAVIOUR_CASES, else the spam policy's suite
    (modstack/policies/spam/behaviour.yaml)."""
    if path is None:
        env = os.environ.get(CASES_ENV)
        path = Path(env) if env else DEFAULT_CASES_PATH
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"behaviour cases not found at {path} (pass a path or set ${CASES_ENV})"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BehaviourCasesError(f"{path}: not valid YAML: {e}") from e
    return _parse_suite(raw, path)


def _parse_suite(raw: Any, path: Path) -> BehaviourSuite:
    def fail(msg: str) -> BehaviourCasesError:
        return BehaviourCasesError(f"{path}: {msg}")

    if not isinstance(raw, Mapping):
        raise fail("top level must be a mapping")
    default_domain = str(raw.get("default_sender_domain") or "example.com")
    mft = _section(raw, "mft", fail)
    allowed = _section(mft, "allowed", fail, "mft.")
    not_allowed = _section(mft, "not_allowed", fail, "mft.")
    inv = _section(raw, "inv", fail)
    dir_ = _section(raw, "dir", fail)

    seen: set[str] = set()
    suite = BehaviourSuite(
        allowed=tuple(_mft_cases(allowed, "mft.allowed", default_domain, seen, fail)),
        not_allowed=tuple(_mft_cases(not_allowed, "mft.not_allowed", default_domain, seen, fail)),
        inv=tuple(_perturbation_cases(inv, "inv", default_domain, seen, fail)),
        dir=tuple(_perturbation_cases(dir_, "dir", default_domain, seen, fail)),
        allowed_fails_on=_action(allowed.get("fails_on_action", "block"), "mft.allowed", fail),
        not_allowed_fails_on=_action(
            not_allowed.get("fails_on_action", "allow"), "mft.not_allowed", fail
        ),
        max_mft_failure_rate={
            "allowed": _rate(allowed, DEFAULT_MAX_MFT_FAILURE_RATE["allowed"], "allowed", fail),
            "not_allowed": _rate(
                not_allowed, DEFAULT_MAX_MFT_FAILURE_RATE["not_allowed"], "not_allowed", fail
            ),
        },
        max_inv_failures=int(inv.get("max_failures", 0)),
        max_dir_failures=int(dir_.get("max_failures", 0)),
        dir_epsilon=float(dir_.get("epsilon", DEFAULT_DIR_EPSILON)),
        path=path,
    )
    if suite.dir_epsilon < 0:
        raise fail(f"dir.epsilon must be >= 0, got {suite.dir_epsilon}")
    return suite


def _section(
    raw: Mapping[str, Any], key: str, fail: Callable[[str], Exception], prefix: str = ""
) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise fail(f"missing section {prefix}{key}")
    return value


def _action(value: Any, where: str, fail: Callable[[str], Exception]) -> str:
    if value not in ACTIONS:
        raise fail(f"{where}.fails_on_action must be one of {ACTIONS}, got {value!r}")
    return str(value)


def _rate(
    sec: Mapping[str, Any], default: float, name: str, fail: Callable[[str], Exception]
) -> float:
    rate = float(sec.get("max_failure_rate", default))
    if not 0.0 <= rate <= 1.0:
        raise fail(f"mft.{name}.max_failure_rate must be in [0, 1], got {rate}")
    return rate


def _case_fields(
    raw: Any, where: str, default_domain: str, seen: set[str], fail: Callable[[str], Exception]
) -> tuple[str, str, Text]:
    if not isinstance(raw, Mapping):
        raise fail(f"{where}: each case must be a mapping, got {raw!r}")
    case_id = raw.get("id")
    if not isinstance(case_id, str) or not case_id:
        raise fail(f"{where}: case without an id: {dict(raw)}")
    if case_id in seen:
        raise fail(f"{where}: duplicate case id {case_id!r}")
    seen.add(case_id)
    capability = raw.get("capability")
    body = raw.get("body")
    if not isinstance(capability, str) or not capability:
        raise fail(f"{where}: case {case_id!r} has no capability")
    if not isinstance(body, str):
        raise fail(f"{where}: case {case_id!r} has no body")
    subject = raw.get("subject") or ""
    domain = raw.get("sender_domain") or default_domain
    return case_id, capability, Text(str(subject), body, str(domain))


def _mft_cases(
    sec: Mapping[str, Any],
    where: str,
    default_domain: str,
    seen: set[str],
    fail: Callable[[str], Exception],
) -> list[MftCase]:
    out = []
    for raw in sec.get("cases") or []:
        case_id, capability, text = _case_fields(raw, where, default_domain, seen, fail)
        out.append(MftCase(case_id, capability, text))
    return out


def _perturbation_cases(
    sec: Mapping[str, Any],
    where: str,
    default_domain: str,
    seen: set[str],
    fail: Callable[[str], Exception],
) -> list[PerturbationCase]:
    perturbations = {}
    for name, spec in (sec.get("perturbations") or {}).items():
        if not isinstance(spec, Mapping) or spec.get("kind") not in PERTURBATION_KINDS:
            raise fail(f"{where}.perturbations.{name}: kind must be one of {PERTURBATION_KINDS}")
        params = {k: str(v) for k, v in spec.items() if k != "kind"}
        needed = {"sender_domain": "domain", "append": "text"}.get(spec["kind"])
        if needed and needed not in params:
            raise fail(f"{where}.perturbations.{name}: kind {spec['kind']} needs {needed!r}")
        perturbations[name] = Perturbation(str(name), spec["kind"], params)
    out = []
    for raw in sec.get("cases") or []:
        case_id, capability, text = _case_fields(raw, where, default_domain, seen, fail)
        name = raw.get("perturbation")
        if name not in perturbations:
            raise fail(f"{where}: case {case_id!r} names unknown perturbation {name!r}")
        label = str(raw.get("label") or "")
        out.append(PerturbationCase(case_id, capability, label, text, perturbations[name]))
    return out


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class CaseFailure:
    """One failed case: what was scored, what came out, and what was expected."""

    test: str
    case_id: str
    capability: str
    expected: str
    subject: str
    body: str
    score: float
    action: str
    perturbation: str | None = None
    base_subject: str | None = None
    base_body: str | None = None
    base_score: float | None = None
    base_action: str | None = None


@dataclass(frozen=True)
class TypeResult:
    """Outcome of one test type."""

    test: str
    total: int
    failures: tuple[CaseFailure, ...]
    review_count: int = 0  # cases whose (final) action was review

    @property
    def failure_count(self) -> int:
        return len(self.failures)

    @property
    def failure_rate(self) -> float:
        return self.failure_count / self.total if self.total else 0.0

    @property
    def review_share(self) -> float:
        return self.review_count / self.total if self.total else 0.0


@dataclass(frozen=True)
class SuiteResult:
    """Outcome of the whole suite, with the pass rules of the suite it ran."""

    results: Mapping[str, TypeResult]
    max_mft_failure_rate: Mapping[str, float]
    max_inv_failures: int = 0
    max_dir_failures: int = 0
    dir_epsilon: float = DEFAULT_DIR_EPSILON

    def __getitem__(self, test: str) -> TypeResult:
        return self.results[test]

    def gate_violations(
        self,
        max_mft_failure_rate: Mapping[str, float] | None = None,
        max_inv_failures: int | None = None,
        max_dir_failures: int | None = None,
    ) -> list[str]:
        """Why the suite fails the gate (empty when it passes). Arguments override the rules
        from cases.yaml; `max_mft_failure_rate` takes keys `allowed` and/or `not_allowed`."""
        rates = {**self.max_mft_failure_rate, **(max_mft_failure_rate or {})}
        unknown = set(rates) - {"allowed", "not_allowed"}
        if unknown:
            raise ValueError(f"unknown MFT types {sorted(unknown)}; use allowed, not_allowed")
        limits = {
            MFT_ALLOWED: ("rate", rates["allowed"]),
            MFT_NOT_ALLOWED: ("rate", rates["not_allowed"]),
            INV: ("count", self.max_inv_failures if max_inv_failures is None else max_inv_failures),
            DIR: ("count", self.max_dir_failures if max_dir_failures is None else max_dir_failures),
        }
        out = []
        for test, (kind, limit) in limits.items():
            r = self.results[test]
            if kind == "rate" and r.failure_rate > limit + 1e-12:
                out.append(
                    f"{test}: failure rate {r.failure_rate:.3f} "
                    f"({r.failure_count}/{r.total}) > {limit:.3f}"
                )
            elif kind == "count" and r.failure_count > limit:
                out.append(f"{test}: {r.failure_count}/{r.total} failures > {limit}")
        return out

    def passed(
        self,
        max_mft_failure_rate: Mapping[str, float] | None = None,
        max_inv_failures: int | None = None,
        max_dir_failures: int | None = None,
    ) -> bool:
        """True when no gate rule is violated (see `gate_violations`)."""
        return not self.gate_violations(max_mft_failure_rate, max_inv_failures, max_dir_failures)

    def as_metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow, e.g. behaviour_mft_allowed_failures, ..._review_share."""
        out: dict[str, float] = {}
        for test in TEST_TYPES:
            r = self.results[test]
            prefix = f"behaviour_{test}"
            out[f"{prefix}_total"] = float(r.total)
            out[f"{prefix}_failures"] = float(r.failure_count)
            out[f"{prefix}_failure_rate"] = r.failure_rate
            if test in (MFT_ALLOWED, MFT_NOT_ALLOWED):
                out[f"{prefix}_review_share"] = r.review_share
        return out

    def failures_table(self) -> list[dict[str, Any]]:
        """One flat dict per failed case, all with the same keys (for an MLflow table/JSON)."""
        keys = CaseFailure.__dataclass_fields__
        return [
            {k: getattr(f, k) for k in keys}
            for test in TEST_TYPES
            for f in self.results[test].failures
        ]


def run_suite(
    suite: BehaviourSuite, scorer: Scorer, *, sender_prefix: str | None = None
) -> SuiteResult:
    """Score every case and check it: one scorer call for MFT, one for INV, one for DIR.

    Each message gets sender id `<prefix>-<case id>-<role>@<domain>`; the prefix is random per
    run unless given, so a scorer backed by a feature store never sees a known sender.
    """
    prefix = sender_prefix or f"behaviour-{uuid.uuid4().hex[:8]}"

    def message(case_id: str, role: str, text: Text) -> Message:
        return Message(text.subject, text.body, f"{prefix}-{case_id}-{role}@{text.sender_domain}")

    mft_cases = (*suite.allowed, *suite.not_allowed)
    mft = _score(scorer, [message(c.id, "mft", c.text) for c in mft_cases])
    allowed_d, not_allowed_d = mft[: len(suite.allowed)], mft[len(suite.allowed) :]
    results = {
        MFT_ALLOWED: _check_mft(MFT_ALLOWED, suite.allowed, allowed_d, suite.allowed_fails_on),
        MFT_NOT_ALLOWED: _check_mft(
            MFT_NOT_ALLOWED, suite.not_allowed, not_allowed_d, suite.not_allowed_fails_on
        ),
    }
    for test, cases in ((INV, suite.inv), (DIR, suite.dir)):
        msgs = [message(c.id, "base", c.base) for c in cases]
        msgs += [message(c.id, "perturbed", c.perturbed) for c in cases]
        decisions = _score(scorer, msgs)
        base, perturbed = decisions[: len(cases)], decisions[len(cases) :]
        results[test] = _check_pairs(test, cases, base, perturbed, suite.dir_epsilon)
    return SuiteResult(
        results=results,
        max_mft_failure_rate=dict(suite.max_mft_failure_rate),
        max_inv_failures=suite.max_inv_failures,
        max_dir_failures=suite.max_dir_failures,
        dir_epsilon=suite.dir_epsilon,
    )


def _score(scorer: Scorer, messages: list[Message]) -> list[Decision]:
    if not messages:
        return []
    decisions = list(scorer(messages))
    if len(decisions) != len(messages):
        raise ValueError(f"scorer returned {len(decisions)} decisions for {len(messages)} messages")
    out = []
    for d in decisions:
        score, action = float(d.score), str(d.action)
        if not math.isfinite(score) or action not in ACTIONS:
            raise ValueError(f"scorer returned an invalid decision {d!r}")
        out.append(Decision(score, action))  # type: ignore[arg-type]
    return out


def _check_mft(
    test: str, cases: Sequence[MftCase], decisions: Sequence[Decision], fails_on: str
) -> TypeResult:
    failures = tuple(
        CaseFailure(
            test=test,
            case_id=c.id,
            capability=c.capability,
            expected=f"not {fails_on}",
            subject=c.text.subject,
            body=c.text.body,
            score=d.score,
            action=d.action,
        )
        for c, d in zip(cases, decisions, strict=True)
        if d.action == fails_on
    )
    reviews = sum(d.action == "review" for d in decisions)
    return TypeResult(test, len(cases), failures, reviews)


def _check_pairs(
    test: str,
    cases: Sequence[PerturbationCase],
    base: Sequence[Decision],
    perturbed: Sequence[Decision],
    epsilon: float,
) -> TypeResult:
    failures = []
    for c, b, p in zip(cases, base, perturbed, strict=True):
        if test == INV:
            failed, expected = p.action != b.action, f"action {b.action}"
        else:
            failed, expected = p.score < b.score - epsilon, f"score >= {b.score - epsilon:.4f}"
        if failed:
            text = c.perturbed
            failures.append(
                CaseFailure(
                    test=test,
                    case_id=c.id,
                    capability=c.capability,
                    expected=expected,
                    subject=text.subject,
                    body=text.body,
                    score=p.score,
                    action=p.action,
                    perturbation=c.perturbation.name,
                    base_subject=c.base.subject,
                    base_body=c.base.body,
                    base_score=b.score,
                    base_action=b.action,
                )
            )
    reviews = sum(d.action == "review" for d in perturbed)
    return TypeResult(test, len(cases), tuple(failures), reviews)
