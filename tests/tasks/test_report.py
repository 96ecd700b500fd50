"""The campaign report: the plot draws what it is given, the table and the final claim on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from tasks.report import NO_KIND, KindClaim, final_claim, plot_accuracy, render_table
from tasks.stats import mcnemar_exact, wilson_interval

ROWS: list[dict[str, Any]] = [
    {"round": 0, "promoted": True, "accuracy": 0.125, "ci_low": 0.085, "ci_high": 0.178}
    | {"test_accuracy": 0.13, "test_ci_low": 0.089, "test_ci_high": 0.184, "ood_accuracy": 0.05}
    | {"ood_ci_low": 0.014, "ood_ci_high": 0.165},
    {"round": 1, "promoted": True, "accuracy": 0.44, "ci_low": 0.373, "ci_high": 0.509}
    | {"test_accuracy": 0.42, "test_ci_low": 0.354, "test_ci_high": 0.489},
    {"round": 2, "promoted": True, "accuracy": 0.61, "ci_low": 0.541, "ci_high": 0.675}
    | {"test_accuracy": 0.59, "test_ci_low": 0.521, "test_ci_high": 0.656, "ood_accuracy": 0.2}
    | {"ood_ci_low": 0.105, "ood_ci_high": 0.348},
    {"round": 3, "promoted": False, "accuracy": 0.395, "ci_low": 0.329, "ci_high": 0.465},
    {"round": 4, "promoted": False, "accuracy": None, "ci_low": None, "ci_high": None},
]


def evaluated(right: set[int], n: int, lenient: set[int] | None = None) -> list[dict[str, Any]]:
    rows = [{"id": f"t{i}", "score": float(i in right)} for i in range(n)]
    if lenient is not None:
        rows = [{**row, "lenient_correct": i in lenient} for i, row in enumerate(rows)]
    return rows


def _blue_pixels(path: Path) -> int:
    image = imread(path)[..., :3]
    blue = (abs(image[..., 0] - 0.12) < 0.06) & (abs(image[..., 1] - 0.47) < 0.06) & (abs(image[..., 2] - 0.71) < 0.06)
    return int(blue.sum())


def test_plot_draws_validation_test_and_ood_series(tmp_path: Path) -> None:
    path = plot_accuracy(ROWS, tmp_path / "plots" / "acc.png", "demo")
    image = imread(path)
    assert image.shape[:2] == (480, 840)  # 7 x 4 inches at 120 dpi
    orange = (abs(image[..., 0] - 1.0) < 0.05) & (abs(image[..., 1] - 0.5) < 0.06) & (image[..., 2] < 0.12)
    assert orange.sum() > 200  # the test series is drawn
    # Without the test and OOD series there is no orange at all, and the validation series is the same.
    bare = [{k: v for k, v in row.items() if not k.startswith(("test_", "ood_"))} for row in ROWS]
    bare_path = plot_accuracy(bare, tmp_path / "bare.png", "demo")
    bare_image = imread(bare_path)
    bare_orange = (abs(bare_image[..., 0] - 1.0) < 0.05) & (abs(bare_image[..., 1] - 0.5) < 0.06)
    assert (bare_orange & (bare_image[..., 2] < 0.12)).sum() == 0
    assert _blue_pixels(bare_path) > 200


def test_plot_draws_the_few_shot_bar_when_given(tmp_path: Path) -> None:
    def red(path: Path) -> int:
        image = imread(path)[..., :3]
        tab_red = (0.84, 0.15, 0.16)
        return int(((abs(image - tab_red) < 0.06).all(axis=-1)).sum())

    without = plot_accuracy(ROWS, tmp_path / "without.png", "demo")
    bar = {"few_shot_test_accuracy": 0.3, "few_shot_test_ci_low": 0.24, "few_shot_test_ci_high": 0.37}
    with_bar = plot_accuracy([ROWS[0] | bar, *ROWS[1:]], tmp_path / "with.png", "demo")
    assert red(without) == 0 and red(with_bar) > 200  # its point, interval, dotted line and legend entry


def test_plot_draws_an_interval_that_misses_its_value_by_a_rounding_error(tmp_path: Path) -> None:
    # Seed 5 of the default scored its bare start 0 of 200 on test, and the interval logged then began at 3.5e-18,
    # above the value: matplotlib refused the negative error bar and the campaign failed in its last step.
    edge = {"test_accuracy": 0.0, "test_ci_low": 3.5e-18, "test_ci_high": 0.045}
    edge |= {"few_shot_ood_accuracy": 1.0, "few_shot_ood_ci_low": 0.96, "few_shot_ood_ci_high": 1.0 - 1e-16}
    assert plot_accuracy([ROWS[0] | edge, *ROWS[1:]], tmp_path / "edge.png", "demo").exists()


def test_table_shows_validation_per_round_and_test_for_promoted_ones() -> None:
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == ["round", "validation", "[95%", "CI]", "promoted", "test", "[95%", "CI]", "OOD"] + [
        "test",
        "[95%",
        "CI]",
    ]
    assert lines[1].split() == ["0", "0.125", "[0.085,", "0.178]", "start", "0.130", "[0.089,", "0.184]"] + [
        "0.050",
        "[0.014,",
        "0.165]",
    ]
    assert lines[2].split() == ["1", "0.440", "[0.373,", "0.509]", "yes", "0.420", "[0.354,", "0.489]", "-"]
    assert lines[4].split() == ["3", "0.395", "[0.329,", "0.465]", "no", "-", "-"]
    assert lines[5].split() == ["4", "-", "(not", "trained)", "no", "-", "-"]
    assert len(lines) == 6  # no claim given: no final line


def test_final_claim_pairs_start_and_final_on_test() -> None:
    # 40 test items: the start gets items 0-4 right (0.125); the final 0-3 and 10-29 (0.6): b=1 (item 4), c=20.
    start = evaluated(set(range(5)), 40, lenient=set(range(12)))
    final = list(reversed(evaluated(set(range(4)) | set(range(10, 30)), 40, lenient=set(range(32)))))
    ood_start, ood_final = evaluated({0}, 10), evaluated({0, 1, 2}, 10)
    claim = final_claim(start, final, start_ood=ood_start, final_ood=ood_final)
    assert (claim.items, claim.b, claim.c) == (40, 1, 20)
    assert claim.start_accuracy == 0.125 and claim.final_accuracy == 0.6 and claim.gain == pytest.approx(0.475)
    assert claim.p_value == pytest.approx(2 * (1 + 21) / 2**21)  # 2 * P(X <= 1), X ~ Bin(21, 1/2)
    assert claim.start_lenient == 0.3 and claim.final_lenient == 0.8
    assert (claim.ood_items, claim.ood_start, claim.ood_final) == (10, 0.1, 0.3)
    assert (claim.ood_b, claim.ood_c) == (0, 2) and claim.ood_p_value == pytest.approx(0.5)  # 2 * P(X = 0), n = 2
    assert claim.metrics()["final/ood_p_value"] == claim.ood_p_value
    assert claim.start_ci == pytest.approx((0.0546, 0.2612), abs=1e-4)  # Wilson, 5 of 40
    assert claim.metrics()["final/test_gain"] == pytest.approx(0.475)
    assert claim.metrics()["final/p_value"] == claim.p_value
    table = render_table(ROWS, claim)
    assert table.splitlines()[-1] == (
        "test, start -> final: 0.125 [0.055, 0.261] -> 0.600 [0.446, 0.737], gain +0.475 on 40 items "
        "(exact McNemar p=2.1e-05, b=1, c=20); lenient (a diagnostic) 0.300 -> 0.800; "
        "OOD 0.100 [0.018, 0.404] -> 0.300 [0.108, 0.603] (10 items, p=0.5, b=0, c=2)"
    )


def test_final_claim_without_lenient_or_ood_and_on_mismatched_items() -> None:
    claim = final_claim(evaluated({0}, 4), evaluated({0, 1}, 4))
    assert claim.start_lenient is None and claim.ood_start is None and claim.ood_p_value is None
    assert not {"final/ood_accuracy", "final/ood_p_value"} & set(claim.metrics())
    assert claim.sentence().endswith("(exact McNemar p=1, b=0, c=1)")
    with pytest.raises(ValueError, match="final policy and starting policy were scored on different test items"):
        final_claim(evaluated({0}, 4), evaluated({0}, 5))


def test_final_claim_per_kind_pairs_the_items_of_each_kind() -> None:
    # 12 test items, even ids "add", odd "sub", t11 without a kind: the final policy gains on additions, loses on
    # subtractions. Start right: 0-5; final right: 0, 2, 4, 6, 8, 10 (every addition) and 1.
    kind_of = {f"t{i}": ("add" if i % 2 == 0 else "sub") for i in range(11)}
    start = [{**row, "prompt": row["id"]} for row in evaluated(set(range(6)), 12)]
    final = evaluated({0, 2, 4, 6, 8, 10, 1}, 12)
    claim = final_claim(start, final, kind_of=lambda row: kind_of.get(row["prompt"]))
    add, kindless, sub = claim.kinds  # t11 is a kind of its own, so the kinds add up to the whole
    assert (kindless.kind, kindless.items, kindless.start_right, kindless.final_right) == (NO_KIND, 1, 0, 0)
    assert (add.split, add.kind, add.items, add.start_right, add.final_right, add.b, add.c) == (
        "test",
        "add",
        6,
        3,
        6,
        0,
        3,
    )
    assert (sub.kind, sub.items, sub.start_right, sub.final_right, sub.b, sub.c) == ("sub", 5, 3, 1, 2, 0)
    assert add.p_value == pytest.approx(0.25) and sub.p_value == pytest.approx(0.5)
    assert (claim.items, claim.b, claim.c) == (12, 2, 3)  # the whole claim keeps the kindless item
    metrics = claim.metrics()
    assert metrics["final/by_kind/test/add/start_accuracy"] == 0.5 and metrics["final/by_kind/test/add/accuracy"] == 1
    assert metrics["final/by_kind/test/sub/p_value"] == sub.p_value
    assert add.final_ci == pytest.approx(wilson_interval(6, 6)) and sub.start_ci == pytest.approx(wilson_interval(3, 5))
    assert metrics["final/by_kind/test/add/ci_low"] == add.final_ci[0]
    assert claim.kinds_line() == (
        "by kind, right of n, start -> final: test add 3/6 [0.188, 0.812] -> 6/6 [0.610, 1.000] (p=0.25, Holm 0.75, "
        "b=0, c=3), no-kind 0/1 [0.000, 0.793] -> 0/1 [0.000, 0.793] (p=1, Holm 1, b=0, c=0), "
        "sub 3/5 [0.231, 0.882] -> 1/5 [0.036, 0.624] (p=0.5, Holm 1, b=2, c=0)"
    )
    # Holm over the split's three kinds: the smallest p tripled, the next doubled and no smaller than it.
    assert (add.p_holm, sub.p_holm, kindless.p_holm) == pytest.approx((0.75, 1.0, 1.0))
    assert metrics["final/by_kind/test/add/p_holm"] == add.p_holm
    assert add.cells()["p, Holm over the kinds"] == 0.75


def test_final_claim_per_kind_on_ood_and_names_mlflow_accepts() -> None:
    start, final = evaluated({0}, 4), evaluated({0, 1}, 4)
    ood_start, ood_final = evaluated({0, 1}, 4), evaluated({2}, 4)
    kinds = {"t0": "how many more?", "t1": "how many more?", "t2": "ages", "t3": "ages"}
    claim = final_claim(start, final, start_ood=ood_start, final_ood=ood_final, kind_of=lambda row: kinds[row["id"]])
    assert [(k.split, k.kind) for k in claim.kinds] == [
        ("test", "ages"),
        ("test", "how many more?"),
        ("ood", "ages"),
        ("ood", "how many more?"),
    ]
    assert "final/by_kind/ood/how many more_/accuracy" in claim.metrics()  # "?" is not allowed in a metric name
    assert "; OOD ages 0/2 [0.000, 0.658] -> 1/2 [0.095, 0.905] (p=1, Holm 1, b=0, c=1), how many more? 2/2 " in str(
        claim.kinds_line()
    )


def test_final_claim_without_kinds_or_with_one_kind_has_no_breakdown() -> None:
    one_kind = final_claim(evaluated({0}, 4), evaluated({0, 1}, 4), kind_of=lambda row: "add")
    none = final_claim(evaluated({0}, 4), evaluated({0, 1}, 4), kind_of=lambda row: None)
    plain = final_claim(evaluated({0}, 4), evaluated({0, 1}, 4))
    for claim in (one_kind, none, plain):
        assert claim.kinds == () and claim.kinds_line() is None
        assert not any("by_kind" in name for name in claim.metrics())


def test_kind_claim_cells_are_a_table_row() -> None:
    kinds = (
        KindClaim("test", "add", 111, 37, 102, 4, 69, 2.4e-16),
        KindClaim("ood", "sub", 45, 14, 24, 4, 14, 0.0308837890625),
    )
    assert [kind.cells() for kind in kinds] == [
        {
            "split": "test",
            "kind": "add",
            "items": 111,
            "start right": 37,
            "start 95% CI": "[0.000, 1.000]",
            "final right": 102,
            "final 95% CI": "[0.000, 1.000]",
            "only start right": 4,
            "only final right": 69,
            "p (exact McNemar, by problem)": 2.4e-16,
        },
        {
            "split": "OOD",
            "kind": "sub",
            "items": 45,
            "start right": 14,
            "start 95% CI": "[0.000, 1.000]",
            "final right": 24,
            "final 95% CI": "[0.000, 1.000]",
            "only start right": 4,
            "only final right": 14,
            "p (exact McNemar, by problem)": 0.03088,
        },
    ]


def test_final_claim_counts_each_problem_once() -> None:
    # 12 problems each asked three times, one verdict per problem: the claim's test and interval are those of
    # the 12 problems (b=2, c=10), not of 36 independent items, and the line says how many problems there are.
    start = [{"id": f"t{i}", "score": float(i % 12 >= 10), "problem": f"p{i % 12}"} for i in range(36)]
    final = [{"id": f"t{i}", "score": float(i % 12 < 10), "problem": f"p{i % 12}"} for i in range(36)]
    claim = final_claim(start, final, start_ood=start, final_ood=final)
    assert (claim.items, claim.problems, claim.b, claim.c) == (36, 12, 6, 30)
    assert claim.p_value == pytest.approx(mcnemar_exact(2, 10)) and claim.ood_p_value == claim.p_value
    assert claim.p_value > mcnemar_exact(6, 30)
    assert claim.final_ci[0] <= wilson_interval(10, 12)[0] and claim.ood_final_ci == claim.final_ci
    assert "on 36 items (12 problems) (exact McNemar by problem p=0.039, b=6, c=30)" in claim.sentence()
    assert "(36 items (12 problems), p=" in claim.sentence()
    assert claim.metrics()["final/test_problems"] == 12.0
