"""`selftrain score [CONFIG] FILE`: a hand-written file of generations gets the expected credit per row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from flows.score import scored_path

# (response, answer, strict credit, lenient credit, in the stated form)
ROWS = [
    (" 2 + 3 = 5. The answer is 5.", "5", True, True, True),
    ("The answer is 6.", "5", False, False, True),
    (" 2 + 3", "3", False, True, False),  # an expression without its result, ending on an operand
    ("The answer is 4 or 5.", "4", False, True, False),  # two candidate answers
    ("Ana has 2 pens and gets 3", "3", False, True, False),  # an echo of the question
    ("The answer is 7. The answer is 9.", "9", False, True, False),  # two stated answers
    (" 9 - 2 = 7. The answer is 7.  ", "7", True, True, True),  # trailing whitespace is fine
]


def _write(path: Path) -> Path:
    lines = [
        json.dumps({"id": f"r{i}", "prompt": f"q{i}", "response": response, "answer": answer, "model": "other"})
        for i, (response, answer, *_) in enumerate(ROWS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_score_gives_the_expected_credit_per_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "generations.jsonl")
    assert main(["score", "tiny", str(path)]) == 0
    out = capsys.readouterr().out
    scored = [json.loads(line) for line in scored_path(path).read_text().splitlines()]
    assert scored_path(path) == tmp_path / "generations.jsonl.scored.jsonl"
    assert [(r["correct"], r["lenient_correct"], r["in_form"]) for r in scored] == [tuple(r[2:]) for r in ROWS]
    assert [r["score"] for r in scored] == [1.0 if r[2] else 0.0 for r in ROWS]
    assert [r["id"] for r in scored] == [f"r{i}" for i in range(len(ROWS))] and scored[0]["model"] == "other"
    # 2 of 7 strict (Wilson 95%: 0.082-0.641), 6 of 7 lenient, 3 of 7 in form
    assert "accuracy          0.286  (2/7, 95% CI 0.082-0.641)" in out
    assert "lenient accuracy  0.857" in out and "format rate       0.429" in out


def test_score_counts_each_problem_once_in_the_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two wordings of 3 + 5 (one built-in problem) and one row of a file's own problem asked twice: 5 rows, 3
    # problems, so the interval is wider than over 5 independent rows.
    rows = [
        ("What is 3 plus 5?", "The answer is 8.", "8", None),
        ("Ana has 5 pens and gets 3 more. How many pens does Ana have now?", "The answer is 8.", "8", None),
        ("What is 7 minus 2?", "The answer is 4.", "5", None),
        ("Tom's riddle", "The answer is 1.", "1", "riddle"),
        ("Tom's riddle, told again", "The answer is 1.", "1", "riddle"),
    ]
    path = tmp_path / "g.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": q, "response": r, "answer": a, **({"problem": p} if p else {})}) + "\n"
            for q, r, a, p in rows
        )
    )
    assert main(["score", "tiny", str(path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy          0.800  (4/5, 95% CI " in out and "counting each of the 3 problems once)" in out
    scored = [json.loads(line) for line in scored_path(path).read_text().splitlines()]
    assert scored[0]["problem"] == scored[1]["problem"] != scored[2]["problem"]
    assert scored[3]["problem"] == scored[4]["problem"] == "riddle"


def test_score_reads_csv_and_parquet_and_follows_the_configs_pattern(tmp_path: Path) -> None:
    frame = pd.DataFrame({"prompt": ["a", "b"], "response": ["#### 4", "The answer is 4."], "answer": [4, 4]})
    frame.to_csv(tmp_path / "g.csv", index=False)
    frame.to_parquet(tmp_path / "g.parquet")
    for name in ("g.csv", "g.parquet"):
        assert main(["score", "tiny", "judge.answer_pattern='#### (\\d+)$'", str(tmp_path / name)]) == 0
        scored = [json.loads(line) for line in scored_path(tmp_path / name).read_text().splitlines()]
        assert [r["correct"] for r in scored] == [True, False]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "response": "x", "answer": 1}', '{"prompt": "b", "answer": 2}'], "line 2: no 'response'"),
        (['{"prompt": "a", "response": 3, "answer": 1}'], "line 1: 'response' must be a string, got number"),
        (['{"prompt": "a", "response": "x"}'], "no 'answer' column"),
        (['{"prompt": "a", "response": "x", "answer": 1}', "{oops"], "line 2: not valid JSON"),
        (  # every response would score wrong against it under the default pattern, which reads an integer
            ['{"prompt": "a", "response": "The answer is 5.", "answer": "5.0"}'],
            "1 of 1 reference answers (line 1, id 'bad-0': '5.0') are not what judge.answer_pattern reads as an "
            "answer, so every response would be scored wrong;",
        ),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["score", "tiny", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"selftrain: error: {path}") and message in err and err.count("\n") == 1
    assert not scored_path(path).exists()


def test_a_directory_where_the_scored_rows_go_is_named_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "generations.jsonl")
    scored_path(path).mkdir()
    assert main(["score", "tiny", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"selftrain: error: {scored_path(path)}: a directory, where the scored rows would be written; move it away\n"
    )


@pytest.mark.parametrize(
    "before_file",
    [
        [],  # `score FILE key=value`: FILE was read as the config ("not valid YAML")
        ["tiny"],  # `score CONFIG FILE key=value`: FILE was read as an override ("expected dotted.key=value")
    ],
)
def test_an_override_after_the_file_gets_the_usage_not_a_misreading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before_file: list[str]
) -> None:
    path = _write(tmp_path / "generations.jsonl")
    assert main(["score", *before_file, str(path), "judge.answer_pattern='#### (\\d+)$'"]) == 2
    assert capsys.readouterr().err == (
        "selftrain: error: FILE comes last: selftrain score [CONFIG] [key=value ...] FILE (the last argument, "
        "judge.answer_pattern='#### (\\d+)$', is an override)\n"
    )
    assert not scored_path(path).exists()
