"""Per-message text statistics: each feature on hand-made messages."""

import math

import pytest

from features.text import (
    TEXT_FEATURE_NAMES,
    looks_like_html,
    text_features,
    url_count,
)


def test_returns_every_feature_as_a_finite_float_in_the_declared_order():
    features = text_features("Hello", "World")
    assert tuple(features) == TEXT_FEATURE_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in features.values())


@pytest.mark.parametrize("subject, body", [("", ""), (None, None), ("", "   \n ")])
def test_empty_and_missing_text_gives_zero_counts_without_dividing_by_zero(subject, body):
    features = text_features(subject, body)
    assert features["subject_chars"] == 0.0
    assert features["url_count"] == 0.0
    assert features["subject_upper_ratio"] == 0.0
    assert features["digit_ratio"] == 0.0
    assert features["html_markup_share"] == 0.0


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        pytest.param(
            "Meeting",
            "one two three\nfour",
            {
                "subject_chars": 7.0,
                "body_chars": 18.0,
                "body_words": 4.0,
                "body_lines": 2.0,
                "longest_word_chars": 7.0,  # "meeting" from the subject
            },
            id="lengths_words_and_lines",
        ),
        pytest.param(
            "FREE money",
            "ABC def 123 !!!",
            {
                "subject_upper_ratio": pytest.approx(4 / 9),
                "body_upper_ratio": pytest.approx(3 / 6),
            },
            id="uppercase_ratio_counts_letters_only",
        ),
        pytest.param(
            "Win!!",
            "Only $5! Really $$$",
            {
                "subject_exclamations": 2.0,
                "exclamations": 3.0,
                "dollar_signs": 4.0,
                "money_amounts": 1.0,  # "$5"; "$$$" is no amount
            },
            id="exclamations_and_dollars_count_subject_and_body",
        ),
        pytest.param(
            "FREE cash",
            "Earn money NOW. Act now, offer ends today. Freedom.",
            {
                "money_tokens": 4.0,  # free, cash, earn, money; not "freedom"
                # words now, now, today + phrases "act now", "offer ends"
                "urgency_tokens": 5.0,
            },
            id="money_and_urgency_tokens_match_whole_words_case_insensitively",
        ),
        pytest.param(
            "",
            "ab12 é€",
            {"digit_ratio": pytest.approx(2 / 6), "non_ascii_ratio": pytest.approx(2 / 6)},
            id="digit_and_non_ascii_ratios_over_non_space_characters",
        ),
    ],
)
def test_feature_values_on_hand_made_messages(subject, body, expected):
    features = text_features(subject, body)
    assert {name: features[name] for name in expected} == expected


def test_urls_count_schemes_and_bare_www_once_each():
    assert url_count("see http://a.com and https://b.org") == 2
    assert url_count("http://www.a.com") == 1
    assert url_count("go to www.a.com or WWW.B.COM") == 2
    assert text_features("", "http://x.io www.y.io")["url_count"] == 2.0


def test_html_markup_share_and_markers():
    html = "<html><body><p>Hi</p><font color=red>BUY</font></body></html>"
    features = text_features("", html)
    assert features["html_tag_count"] == 8.0
    assert features["html_markup_share"] == pytest.approx((len(html) - len("HiBUY")) / len(html))
    assert features["html_marker_count"] >= 3.0
    assert looks_like_html(html)
    assert not looks_like_html("if a < b and c > d")
    assert text_features("", "2 < 3 > 1")["html_tag_count"] == 0.0


def test_email_addresses_and_reply_subjects():
    features = text_features("Re: lunch", "write to bob@example.com or ann.lee@mail.co.uk")
    assert features["email_address_count"] == 2.0
    assert features["subject_is_reply"] == 1.0
    assert text_features("Fwd: x", "")["subject_is_reply"] == 1.0
    assert text_features("Rescue", "")["subject_is_reply"] == 0.0


def test_same_input_gives_the_same_output():
    assert text_features("Hi!", "$5 at http://x.y") == text_features("Hi!", "$5 at http://x.y")
