"""The data report of a corpus build: numbers (JSON-able), rich tables, and a timeline plot."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from rich.console import Group
from rich.table import Table


@dataclass(frozen=True, slots=True)
class CorpusReport:
    """Headline numbers of the corpus build."""

    input_mails: int
    input_spam: int
    parsed: int
    rejected: int
    groups: list[dict]  # group, input, parsed, rejected, history, future, spam_share, html_share
    periods: list[dict]  # period, rows, spam, spam_share, html_share, duplicates, first, last
    distinct_senders: int
    biggest_sender: str
    biggest_sender_mails: int
    duplicates: int
    repaired_rows: int
    repairs: dict[str, int]  # rule -> rows
    rejections: dict[str, int]  # reason -> mails

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return asdict(self)


def build_report(messages: pd.DataFrame, rejected: pd.DataFrame) -> CorpusReport:
    """Count what the build produced."""
    groups = []
    for group in sorted(set(messages["group"]) | set(rejected["group"])):
        rows = messages[messages["group"] == group]
        dropped = int((rejected["group"] == group).sum())
        groups.append(
            {
                "group": group,
                "input": len(rows) + dropped,
                "parsed": len(rows),
                "rejected": dropped,
                "history": int((rows["period"] == "history").sum()),
                "future": int((rows["period"] == "future").sum()),
                "spam_share": _share(rows["label"] == "spam"),
                "html_share": _share(rows["is_html"]),
            }
        )
    periods = []
    for period in ("history", "future"):
        rows = messages[messages["period"] == period]
        periods.append(
            {
                "period": period,
                "rows": len(rows),
                "spam": int((rows["label"] == "spam").sum()),
                "spam_share": _share(rows["label"] == "spam"),
                "html_share": _share(rows["is_html"]),
                "duplicates": int(rows["is_duplicate"].sum()),
                "first": rows["sent_at"].min().isoformat() if len(rows) else "",
                "last": rows["sent_at"].max().isoformat() if len(rows) else "",
            }
        )
    senders = messages["sender_id"].value_counts()
    repairs = Counter(rule for value in messages["repaired"] if value for rule in value.split(","))
    spam_in = int((messages["label"] == "spam").sum() + (rejected["label"] == "spam").sum())
    return CorpusReport(
        input_mails=len(messages) + len(rejected),
        input_spam=spam_in,
        parsed=len(messages),
        rejected=len(rejected),
        groups=groups,
        periods=periods,
        distinct_senders=int(senders.size),
        biggest_sender=str(senders.index[0]) if senders.size else "",
        biggest_sender_mails=int(senders.iloc[0]) if senders.size else 0,
        duplicates=int(messages["is_duplicate"].sum()),
        repaired_rows=int((messages["repaired"] != "").sum()),
        repairs=dict(repairs.most_common()),
        rejections={str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
    )


def render_report(report: CorpusReport) -> Group:
    """The report as rich tables, for the terminal."""
    overview = Table(title="Corpus", show_header=False, title_justify="left")
    overview.add_row("mails in the package", f"{report.input_mails:,} ({report.input_spam:,} spam)")
    overview.add_row("parsed / rejected", f"{report.parsed:,} / {report.rejected:,}")
    overview.add_row("distinct senders", f"{report.distinct_senders:,}")
    overview.add_row(
        "biggest sender", f"{report.biggest_sender} ({report.biggest_sender_mails:,} mails)"
    )
    overview.add_row("exact duplicates", f"{report.duplicates:,}")
    overview.add_row("rows repaired", f"{report.repaired_rows:,}")

    groups = Table(
        title="Per group (the -1/-2 suffixes are not a time order)", title_justify="left"
    )
    columns = ("group", "input", "parsed", "rejected", "history", "future", "spam", "HTML only")
    for column in columns:
        groups.add_column(column, justify="left" if column == "group" else "right")
    for g in report.groups:
        groups.add_row(
            g["group"], f"{g['input']:,}", f"{g['parsed']:,}", f"{g['rejected']:,}",
            f"{g['history']:,}", f"{g['future']:,}", _pct(g["spam_share"]), _pct(g["html_share"]),
        )  # fmt: skip

    periods = Table(title="Per period (future starts 2002-08-22 UTC)", title_justify="left")
    for column in ("period", "rows", "spam", "HTML only", "duplicates", "first", "last"):
        periods.add_column(
            column, justify="left" if column in ("period", "first", "last") else "right"
        )
    for p in report.periods:
        periods.add_row(
            p["period"], f"{p['rows']:,}", _pct(p["spam_share"]), _pct(p["html_share"]),
            f"{p['duplicates']:,}", p["first"][:10], p["last"][:10],
        )  # fmt: skip

    fixes = Table(title="Repairs and rejections", title_justify="left")
    fixes.add_column("kind")
    fixes.add_column("rule / reason")
    fixes.add_column("rows", justify="right")
    for rule, count in report.repairs.items():
        fixes.add_row("repaired", rule, f"{count:,}")
    for reason, count in report.rejections.items():
        fixes.add_row("rejected", reason, f"{count:,}")
    return Group(overview, groups, periods, fixes)


def plot_timeline(messages: pd.DataFrame, path: Path) -> Path:
    """Weekly mails per label with the history/future boundary: the drift the demo replays."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    from modstack.corpus.store import FUTURE_START

    recent = messages[messages["sent_at"] >= pd.Timestamp("2002-01-01", tz="UTC")]
    weekly = (
        recent.set_index("sent_at")
        .groupby("label")["message_id"]
        .resample("W")
        .size()
        .unstack(0, fill_value=0)
        .reindex(columns=["ham", "spam"], fill_value=0)
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    # resample("W") labels each week by its closing Sunday: draw the bar over the days before it.
    ax.bar(weekly.index, weekly["ham"], width=-6, align="edge", label="ham", color="#4c72b0")
    ax.bar(
        weekly.index,
        weekly["spam"],
        width=-6,
        align="edge",
        bottom=weekly["ham"],
        label="spam",
        color="#dd8452",
    )
    ax.axvline(pd.Timestamp(FUTURE_START), color="black", linestyle="--", linewidth=1)
    ax.annotate(
        "history | future", (pd.Timestamp(FUTURE_START), ax.get_ylim()[1] * 0.95), ha="center"
    )
    older = int((messages["sent_at"] < pd.Timestamp("2002-01-01", tz="UTC")).sum())
    ax.set_title(f"SpamAssassin corpus: mails per week in 2002 ({older:,} older mails not shown)")
    ax.set_ylabel("mails per week")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _share(mask: pd.Series) -> float:
    return round(float(mask.mean()), 4) if len(mask) else 0.0


def _pct(share: float) -> str:
    return f"{share:.1%}"
