"""Campaign report: the accuracy plot, the end-of-campaign table and the final claim on the test set.

Validation decides (it is scored every round and the gate reads it); test decides nothing and is scored for
the starting policy and each promoted one, so the claim the campaign makes (start vs final on test) is not
biased by the choice of rounds. The plot and the table show both, each with its 95% Wilson interval.

A round row is a dict with `round`, `promoted`, the validation `accuracy`, `ci_low`, `ci_high` (None when
the round's training was skipped) and, when the policy was scored on test, `test_accuracy`, `test_ci_low`,
`test_ci_high` and optionally `ood_accuracy`, `ood_ci_low`, `ood_ci_high`. Round 0 may carry the few-shot
baseline (`evaluate.few_shot_baseline`) as `few_shot_test_accuracy`, ... and `few_shot_ood_accuracy`, ...

Given each item's kind (`tasks.prompts.item_kind`: the built-in task's operation, a prompt file's `kind` column),
the claim is also made per kind, paired on the same items: where a policy gains and where it loses.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from tasks.stats import (  # noqa: E402
    accuracy_cell,
    accuracy_text,
    clustered_interval,
    clustered_mcnemar,
    holm,
    interval_extents,
    interval_text,
    item_groups,
    paired_counts,
    paired_credit,
)
from tasks.tracking import RoundContext  # noqa: E402

Rows = Sequence[Mapping[str, Any]]
KindOf = Callable[[Mapping[str, Any]], str | None]  # an item's kind, None when it has none
METRIC_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. ]")  # what an MLflow metric name may not hold
SERIES = (  # key prefix, legend label, colour, marker, x offset (so intervals at one round do not overlap)
    ("", "validation, promoted (decides)", "tab:blue", "o", 0.0),
    ("test_", "test (promoted policies)", "tab:orange", "s", 0.12),
    ("ood_", "OOD test", "tab:green", "^", 0.24),
)
BARS = (  # the few-shot baseline at round 0, and a dotted line at its level across the rounds: the bar to clear
    ("few_shot_test_", "test, starting policy behind its worked examples", "tab:red", "D", -0.12),
    ("few_shot_ood_", "OOD test, starting policy behind its examples", "tab:purple", "v", -0.24),
)


def plot_accuracy(rows: Rows, path: str | Path, title: str) -> Path:
    """Draw validation accuracy per round and test (and OOD) accuracy where scored, with 95% intervals.

    Validation points are filled for promoted rounds and hollow for refused ones; test and OOD points are
    drawn only for the rounds that carry them (round 0 and the promoted ones). The few-shot baseline, when round 0
    carries it, is drawn beside round 0 with a dotted line at its level across the rounds (`BARS`).

    Args:
        rows: one dict per round (module docstring); rounds without a validation accuracy are left out.
        path: the PNG to write.
        title: the plot title (the campaign name).
    """
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    rounds = sorted({int(r["round"]) for r in rows})
    for prefix, label, colour, marker, offset in SERIES:
        shown = [r for r in rows if r.get(f"{prefix}accuracy") is not None]
        if not shown:
            continue
        xs = [r["round"] + offset for r in shown]
        ys = [r[f"{prefix}accuracy"] for r in shown]
        low, high = interval_extents(
            ys,
            [_given(r.get(f"{prefix}ci_low"), y) for r, y in zip(shown, ys, strict=True)],
            [_given(r.get(f"{prefix}ci_high"), y) for r, y in zip(shown, ys, strict=True)],
        )
        ax.errorbar(xs, ys, yerr=[low, high], color=colour, capsize=3, lw=1.2, ls="-" if not prefix else "--", zorder=1)
        for x, y, r in zip(xs, ys, shown, strict=True):
            face = colour if prefix or r.get("promoted", True) else "white"  # hollow: refused by the gate
            ax.scatter([x], [y], s=44, marker=marker, facecolors=face, edgecolors=colour, zorder=2)
        ax.scatter([], [], s=44, marker=marker, color=colour, label=label)  # one legend entry per series
    for prefix, label, colour, marker, offset in BARS:
        bar = next((r for r in rows if r.get(f"{prefix}accuracy") is not None), None)
        if bar is None:
            continue
        y = bar[f"{prefix}accuracy"]
        extents = interval_extents(
            [y], [_given(bar.get(f"{prefix}ci_low"), y)], [_given(bar.get(f"{prefix}ci_high"), y)]
        )
        ax.errorbar([bar["round"] + offset], [y], yerr=list(extents), color=colour, capsize=3, lw=1.2, zorder=1)
        ax.scatter([bar["round"] + offset], [y], s=44, marker=marker, color=colour, zorder=2, label=label)
        ax.axhline(y, color=colour, lw=0.9, ls=":", zorder=0)
    if any(r.get("accuracy") is not None and not r.get("promoted", True) for r in rows):
        ax.scatter(
            [], [], s=44, marker="o", facecolors="white", edgecolors="tab:blue", label="validation, not promoted"
        )
    ax.set_xticks(rounds)
    ax.set_xlabel("round (0 = starting policy)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.set_title(f"{title}: accuracy with 95% intervals", fontsize=9)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


@dataclasses.dataclass(frozen=True)
class KindClaim:
    """The claim on the items of one kind in one split: start vs final policy, paired.

    Attributes:
        split: "test" or "ood".
        kind: the items' kind.
        items: how many items of that kind the split has.
        start_right, final_right: how many each policy got right (strict credit).
        b, c: items only the start policy got right, and only the final one.
        p_value: exact McNemar p-value on them, over the items' problems (`tasks.stats.clustered_mcnemar`).
        start_ci, final_ci: each policy's 95% interval on the kind's items (`tasks.stats.clustered_interval`).
        p_holm: p_value adjusted by Holm's method over the split's kinds (`tasks.stats.holm`), since a breakdown
            tests every kind at once and the smallest of several p-values is small by chance; None: not adjusted.
    """

    split: str
    kind: str
    items: int
    start_right: int
    final_right: int
    b: int
    c: int
    p_value: float
    start_ci: tuple[float, float] = (0.0, 1.0)
    final_ci: tuple[float, float] = (0.0, 1.0)
    p_holm: float | None = None

    @property
    def split_label(self) -> str:
        """The split as the console and the Prefect table name it: "test" or "OOD"."""
        return "OOD" if self.split == "ood" else self.split

    def metric(self, name: str) -> str:
        """`final/by_kind/<split>/<kind>/<name>`, the kind reduced to the characters MLflow allows."""
        return f"final/by_kind/{self.split}/{METRIC_UNSAFE.sub('_', self.kind)}/{name}"

    def cells(self) -> dict[str, Any]:
        """The claim as a table row (the Prefect artifact `<name>-by-kind`): items, each policy's right answers and the
        95% interval of its accuracy, the items only one of them got right, the p-value and its Holm adjustment over
        the split's kinds where made, to 4 significant digits (the metrics hold them exactly)."""
        holm = {} if self.p_holm is None else {"p, Holm over the kinds": float(f"{self.p_holm:.4g}")}
        return {
            "split": self.split_label,
            "kind": self.kind,
            "items": self.items,
            "start right": self.start_right,
            "start 95% CI": interval_text(self.start_ci),
            "final right": self.final_right,
            "final 95% CI": interval_text(self.final_ci),
            "only start right": self.b,
            "only final right": self.c,
            "p (exact McNemar, by problem)": float(f"{self.p_value:.4g}"),
            **holm,
        }

    def text(self) -> str:
        """'add 13/55 [0.143, 0.362] -> 5/55 [0.040, 0.196] (p=0.077, Holm 0.077, b=12, c=4)': each policy's right
        answers with the 95% interval of its accuracy (no Holm figure where none was made)."""
        n, p = self.items, self.p_value
        holm = "" if self.p_holm is None else f", Holm {self.p_holm:.2g}"
        counts = f"b={self.b}, c={self.c}"
        start = f"{self.start_right}/{n} {interval_text(self.start_ci)}"
        final = f"{self.final_right}/{n} {interval_text(self.final_ci)}"
        return f"{self.kind} {start} -> {final} (p={p:.2g}{holm}, {counts})"


NO_KIND = "no-kind"  # the kind of an item whose row names none, in the claim per kind (a metric name: no brackets)


def kind_claims(
    split: str,
    ids: Sequence[str],
    final_credit: Sequence[float],
    start_credit: Sequence[float],
    start: Rows,
    kind_of: KindOf,
) -> tuple[KindClaim, ...]:
    """The claim per kind on one split's items, given the pairs `final_claim` made (`paired_credit`: ids and each
    policy's credit) and the starting policy's rows, whose kinds `kind_of` reads; () when fewer than two kinds are
    present, where a breakdown would only repeat the whole. Items of no kind (an empty `kind` cell) are a kind of
    their own, `NO_KIND`, when others have one, so the kinds add up to the whole."""
    kind = {row["id"]: kind_of(row) for row in start}
    problems = item_groups(start, ids)
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(ids):
        groups.setdefault(NO_KIND if kind[item] is None else str(kind[item]), []).append(index)
    if len(groups) < 2:
        return ()
    claims = []
    for name, indices in sorted(groups.items()):
        final_part, start_part = [final_credit[i] for i in indices], [start_credit[i] for i in indices]
        counts, kind_problems = paired_counts(final_part, start_part), [problems[i] for i in indices]
        claims.append(
            KindClaim(
                split=split,
                kind=name,
                items=counts.items,
                start_right=counts.reference_right,
                final_right=counts.candidate_right,
                b=counts.b,
                c=counts.c,
                p_value=clustered_mcnemar(final_part, start_part, kind_problems),
                start_ci=clustered_interval(start_part, kind_problems),
                final_ci=clustered_interval(final_part, kind_problems),
            )
        )
    adjusted = holm([claim.p_value for claim in claims])
    return tuple(dataclasses.replace(claim, p_holm=p) for claim, p in zip(claims, adjusted, strict=True))


@dataclasses.dataclass(frozen=True)
class FinalClaim:
    """Start vs final policy on the test set: the campaign's claim.

    Intervals and p-values count the items' problems (`tasks.stats`: rewordings of one problem are one group,
    where the rows name their `problem`), so a set that asks one problem in several wordings claims no more
    than its problems show.

    Attributes:
        items: test items both policies were scored on.
        problems: the distinct problems among them (`items` when the rows name none).
        start_accuracy, final_accuracy: strict accuracy (credit only for the answer in the stated form).
        start_ci, final_ci: their 95% intervals (`tasks.stats.clustered_interval`).
        start_lenient, final_lenient: lenient accuracy (a diagnostic; None when rows carry no lenient credit).
        gain: final minus start accuracy.
        p_value: exact McNemar p-value, final vs start on the same test items (`tasks.stats.clustered_mcnemar`).
        b, c: items only the start policy got right, and only the final one.
        ood_items, ood_problems, ood_start, ood_final: the out-of-distribution slice (0 and None without one).
        ood_start_ci, ood_final_ci: their 95% intervals (None without the slice).
        ood_p_value, ood_b, ood_c: its exact McNemar p-value and discordant counts, final vs start on the
            same OOD items (None without the slice).
        kinds: the claim per kind of item on test, then on OOD (`kind_claims`; () without kinds).
        split: the set compared, as the sentence names it ("test", or an extra set's name).
    """

    items: int
    problems: int
    start_accuracy: float
    final_accuracy: float
    start_ci: tuple[float, float]
    final_ci: tuple[float, float]
    start_lenient: float | None
    final_lenient: float | None
    gain: float
    p_value: float
    b: int
    c: int
    ood_items: int = 0
    ood_problems: int = 0
    ood_start: float | None = None
    ood_final: float | None = None
    ood_start_ci: tuple[float, float] | None = None
    ood_final_ci: tuple[float, float] | None = None
    ood_p_value: float | None = None
    ood_b: int | None = None
    ood_c: int | None = None
    kinds: tuple[KindClaim, ...] = ()
    split: str = "test"

    def metrics(self) -> dict[str, float]:
        """`final/*` metrics for the campaign run."""
        values = {
            "final/test_gain": self.gain,
            "final/p_value": self.p_value,
            "final/start_test_accuracy": self.start_accuracy,
            "final/test_accuracy": self.final_accuracy,
            "final/start_test_ci_low": self.start_ci[0],
            "final/start_test_ci_high": self.start_ci[1],
            "final/test_ci_low": self.final_ci[0],
            "final/test_ci_high": self.final_ci[1],
            "final/test_problems": float(self.problems),
        }
        if self.start_lenient is not None and self.final_lenient is not None:
            values |= {"final/start_test_lenient_accuracy": self.start_lenient}
            values |= {"final/test_lenient_accuracy": self.final_lenient}
        if self.ood_start is not None and self.ood_final is not None:
            values |= {"final/start_ood_accuracy": self.ood_start, "final/ood_accuracy": self.ood_final}
            values |= {"final/ood_problems": float(self.ood_problems)}
        if self.ood_start_ci is not None and self.ood_final_ci is not None:
            values |= {"final/start_ood_ci_low": self.ood_start_ci[0], "final/start_ood_ci_high": self.ood_start_ci[1]}
            values |= {"final/ood_ci_low": self.ood_final_ci[0], "final/ood_ci_high": self.ood_final_ci[1]}
        if self.ood_p_value is not None:
            values |= {"final/ood_p_value": self.ood_p_value}
        for kind in self.kinds:
            values |= {
                kind.metric("start_accuracy"): kind.start_right / kind.items,
                kind.metric("accuracy"): kind.final_right / kind.items,
                kind.metric("p_value"): kind.p_value,
                **({} if kind.p_holm is None else {kind.metric("p_holm"): kind.p_holm}),
                kind.metric("start_ci_low"): kind.start_ci[0],
                kind.metric("start_ci_high"): kind.start_ci[1],
                kind.metric("ci_low"): kind.final_ci[0],
                kind.metric("ci_high"): kind.final_ci[1],
            }
        return values

    def kinds_line(self, start: str = "start") -> str | None:
        """The claim per kind in one line ('by kind, right of n, start -> final: test add 40/98 -> ...; OOD ...'),
        `start` naming the policy compared with (the few-shot bar, say); None without kinds."""
        if not self.kinds:
            return None
        parts = [
            f"{label} " + ", ".join(k.text() for k in self.kinds if k.split_label == label)
            for label in dict.fromkeys(kind.split_label for kind in self.kinds)
        ]
        return f"by kind, right of n, {start} -> final: " + "; ".join(parts)

    def sentence(self) -> str:
        """The claim in one line (the last line of the table)."""
        text = (
            f"{self.split}, start -> final: {accuracy_text(self.start_accuracy, self.start_ci)} -> "
            f"{accuracy_text(self.final_accuracy, self.final_ci)}, gain {self.gain:+.3f} "
            f"on {_items(self.items, self.problems)} ({_test(self.items, self.problems)} p={self.p_value:.2g}, "
            f"b={self.b}, c={self.c})"
        )
        if self.start_lenient is not None and self.final_lenient is not None:
            text += f"; lenient (a diagnostic) {self.start_lenient:.3f} -> {self.final_lenient:.3f}"
        if self.ood_start is not None and self.ood_final is not None:
            start, final = (
                accuracy_text(self.ood_start, self.ood_start_ci),
                accuracy_text(self.ood_final, self.ood_final_ci),
            )
            text += f"; OOD {start} -> {final} ({_items(self.ood_items, self.ood_problems)}"
            if self.ood_p_value is not None:
                text += f", p={self.ood_p_value:.2g}, b={self.ood_b}, c={self.ood_c}"
            text += ")"
        return text


def final_claim(
    start: Rows,
    final: Rows,
    *,
    start_ood: Rows | None = None,
    final_ood: Rows | None = None,
    lenient_key: str = "lenient_correct",
    kind_of: KindOf | None = None,
    split: str = "test",
) -> FinalClaim:
    """Compare the starting and the final policy's evaluated test rows (`id`, `score`, optionally `lenient_key`);
    with `kind_of`, per kind of item too (`kind_claims`, on test and OOD). `split` names the set compared (an
    extra set's name instead of "test") in messages and the sentence.

    Raises:
        ValueError: the two evaluations are not on the same items, or there are none.
    """
    ids, final_credit, start_credit = paired_credit(final, start, names=("final policy", "starting policy", split))
    if not final_credit:
        raise ValueError(f"the final claim needs at least one {split} item scored for both policies")
    counts = paired_counts(final_credit, start_credit)
    groups = item_groups(start, ids)
    n = counts.items
    lenient = all(lenient_key in row for row in (*start, *final))
    ood_start = ood_final = ood_p = None
    ood_start_ci = ood_final_ci = None
    ood_items, ood_problems, ood_b, ood_c = 0, 0, None, None
    kinds = kind_claims("test", ids, final_credit, start_credit, start, kind_of) if kind_of is not None else ()
    if start_ood and final_ood:
        names = ("final policy", "starting policy", "OOD test")
        ood_ids, ood_final_credit, ood_start_credit = paired_credit(final_ood, start_ood, names=names)
        ood = paired_counts(ood_final_credit, ood_start_credit)
        ood_groups = item_groups(start_ood, ood_ids)
        ood_items, ood_problems = ood.items, len(set(ood_groups))
        ood_start, ood_final = ood.reference_right / ood.items, ood.candidate_right / ood.items
        ood_start_ci = clustered_interval(ood_start_credit, ood_groups)
        ood_final_ci = clustered_interval(ood_final_credit, ood_groups)
        ood_p, ood_b, ood_c = clustered_mcnemar(ood_final_credit, ood_start_credit, ood_groups), ood.b, ood.c
        if kind_of is not None:
            kinds += kind_claims("ood", ood_ids, ood_final_credit, ood_start_credit, start_ood, kind_of)
    return FinalClaim(
        items=n,
        problems=len(set(groups)),
        start_accuracy=counts.reference_right / n,
        final_accuracy=counts.candidate_right / n,
        start_ci=clustered_interval(start_credit, groups),
        final_ci=clustered_interval(final_credit, groups),
        start_lenient=sum(float(r[lenient_key]) for r in start) / n if lenient else None,
        final_lenient=sum(float(r[lenient_key]) for r in final) / n if lenient else None,
        gain=(counts.candidate_right - counts.reference_right) / n,
        p_value=clustered_mcnemar(final_credit, start_credit, groups),
        b=counts.b,
        c=counts.c,
        ood_items=ood_items,
        ood_problems=ood_problems,
        ood_start=ood_start,
        ood_final=ood_final,
        ood_start_ci=ood_start_ci,
        ood_final_ci=ood_final_ci,
        ood_p_value=ood_p,
        ood_b=ood_b,
        ood_c=ood_c,
        kinds=kinds,
        split=split,
    )


def render_table(rows: Rows, claim: FinalClaim | None = None) -> str:
    """The end-of-campaign table: per round validation accuracy with its interval, whether the round was
    promoted, and test (and OOD) accuracy with intervals where scored; then the final claim, if given."""
    has_ood = any(r.get("ood_accuracy") is not None for r in rows)
    header = f"{'round':>5}  {'validation [95% CI]':<22}  {'promoted':<8}  {'test [95% CI]':<22}"
    lines = [(header + (f"  {'OOD test [95% CI]':<22}" if has_ood else "")).rstrip()]
    for r in rows:
        promoted = "start" if r["round"] == 0 else ("yes" if r.get("promoted") else "no")
        validation = accuracy_cell(r, "") if r.get("accuracy") is not None else "- (not trained)"
        line = f"{r['round']:>5}  {validation:<22}  {promoted:<8}  {accuracy_cell(r, 'test_'):<22}"
        lines.append((line + (f"  {accuracy_cell(r, 'ood_'):<22}" if has_ood else "")).rstrip())
    if claim is not None:
        lines.append(claim.sentence())
    return "\n".join(lines)


def _in_problems(items: int, problems: int) -> bool:
    """Whether the items come in problems (some problem asked more than once), so counts by problem differ."""
    return problems not in (0, items)


def _items(items: int, problems: int) -> str:
    """'200 items (79 problems)', or '200 items' when every item is its own problem."""
    return f"{items} items ({problems} problems)" if _in_problems(items, problems) else f"{items} items"


def _test(items: int, problems: int) -> str:
    """The paired test's name: McNemar's when every item is its own problem, else its form over problems (the
    sign-flip test of `tasks.stats.clustered_mcnemar`, whose counts b and c are still items)."""
    return "exact McNemar by problem" if _in_problems(items, problems) else "exact McNemar"


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


@task(name="report", cache_policy=NO_CACHE)
def report_task(rows: list[dict[str, Any]], out_path: str, title: str, ctx: RoundContext) -> str:
    """Draw the accuracy plot and log it on the campaign run."""
    path = plot_accuracy(rows, out_path, title)
    ctx.log_artifact(path)
    return str(path)
