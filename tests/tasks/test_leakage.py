"""tasks.leakage: rows from outside the splits matched with scored and training prompts by problem."""

from __future__ import annotations

from configs.loader import load_config
from tasks.leakage import bank_overlaps, champion_overlaps, match_key, scored_sets
from tasks.prompts import describe, shared_rows


def test_a_built_in_question_is_its_problem_and_any_other_prompt_its_normalized_text() -> None:
    key = match_key(load_config("tiny"))
    story = {"prompt": "Ana has 5 pens and gets 3 more. How many pens does Ana have now?"}
    assert key(story) == key({"prompt": "What is 3 plus 5?"}) == "add:3:5"
    assert key({"prompt": "  Name a  COLOUR "}) == key({"prompt": "name a colour"}) == "prompt:name a colour"
    file_key = match_key(load_config("tiny", ["prompts.source=file", "prompts.train_path=x.jsonl"]))
    assert file_key({"prompt": "What is 3 plus 5?"}) != file_key({"prompt": "What is 5 plus 3?"})  # text only


def test_shared_rows_are_named_by_place_and_the_first_three_shown() -> None:
    key = match_key(load_config("tiny"))
    rows = [{"prompt": p} for p in ("q", "What is 1 plus 2?", "What is 2 plus 1?", "x", "What is 4 plus 4?", "y")]
    others = [{"prompt": "What is 1 plus 2?"}, {"prompt": "What is 4 plus 4?"}, {"prompt": "y"}]
    found = shared_rows(rows, others, key)
    assert found == [1, 2, 4, 5]
    places = [f"line {2 * i + 1}" for i in range(len(rows))]
    assert describe(found, rows, places) == (
        "4 row(s) (line 3: 'What is 1 plus 2?', line 5: 'What is 2 plus 1?', line 9: 'What is 4 plus 4?', ...)"
    )


def test_a_bank_is_compared_with_every_scored_set() -> None:
    from tasks.prompts import campaign_prompts

    config = load_config("tiny")
    validation, ood = campaign_prompts(config, "validation", 1), campaign_prompts(config, "ood", 1)
    bank = [{"prompt": "unrelated"}, {"prompt": ood[0]["prompt"]}, {"prompt": validation[0]["prompt"]}]
    extra = {"bench": [{"id": "b", "prompt": "Unrelated", "answer": "1"}]}
    held_out = {"validation": validation, "test": [], "ood": ood}
    scored = scored_sets(held_out, extra)
    assert list(scored) == ["validation", "ood", "evaluate.extra_sets 'bench'"]  # an empty set is left out
    numbered = list(zip([1, 2, 5], bank, strict=True))
    reasons = bank_overlaps(config, numbered, scored)
    assert [count for count, _ in reasons] == [1, 1, 1]
    assert reasons[0][1].endswith("share a problem with the validation prompts") and "line 5" in reasons[0][1]
    assert reasons[1][1].endswith("share a problem with the ood prompts") and "line 2" in reasons[1][1]
    assert (
        reasons[2][1] == "1 row(s) (line 1: 'unrelated') share a problem with the evaluate.extra_sets 'bench' prompts"
    )
    assert bank_overlaps(config, numbered[:1], scored_sets(held_out, {})) == []


def test_the_built_in_training_reach_is_the_range_the_level_and_the_curriculum_s_levels() -> None:
    from tasks.arithmetic import LEVELS
    from tasks.prompts import training_reach

    assert training_reach(load_config("tiny").prompts) == [{"add": (1, 9), "sub": (1, 9)}]
    chained = training_reach(load_config("tiny", ["prompts.two_step_share=0.25"]).prompts)
    assert chained == [{"add": (1, 9), "sub": (1, 9), "add-add": (1, 9), "add-sub": (1, 9)}]
    assert training_reach(load_config("tiny", ["prompts.level=2"]).prompts)[1:] == [LEVELS[1]]
    climbing = training_reach(load_config("tiny", ["prompts.level=2", "prompts.curriculum=true"]).prompts)
    assert climbing[1:] == LEVELS[1:]


def test_a_built_in_problem_may_be_trained_on_only_in_the_training_split_and_the_reach() -> None:
    from tasks.arithmetic import parse_question, problem_split
    from tasks.leakage import may_train_on
    from tasks.prompts import campaign_prompts

    config = load_config("tiny")
    trained = may_train_on(config)
    row = campaign_prompts(config, "train", 1)[0]
    op, (a, b), _ = parse_question(row["prompt"])  # type: ignore[misc]
    assert trained(row)
    assert trained({"prompt": f"What is {a} {'plus' if op == 'add' else 'minus'} {b}?"})  # the problem reworded
    assert not any(trained(held) for held in campaign_prompts(config, "validation", 1))
    assert not any(trained(beyond) for beyond in campaign_prompts(config, "ood", 1))  # operands past the range
    assert not trained({"prompt": "Name a colour."})
    # Products are outside the tiny task's reach until a curriculum climbs from level 2 to level 3.
    product = next(
        f"What is {x} times {y}?" for x in range(1, 10) for y in range(1, 10) if problem_split("mul", x, y) == "train"
    )
    assert not trained({"prompt": product})
    assert not may_train_on(load_config("tiny", ["prompts.level=2"]))({"prompt": product})
    assert may_train_on(load_config("tiny", ["prompts.level=2", "prompts.curriculum=true"]))({"prompt": product})


def test_a_two_step_problem_is_trained_on_only_when_a_draw_would_keep_it_in_some_order() -> None:
    # The draw never keeps a + b + c whose first step a + b (or second, when a + b is in range) is a held-out
    # problem: a row must not work one. Another order of the same problem may be kept, and then it counts.
    from itertools import permutations

    from tasks.arithmetic import problem_split
    from tasks.leakage import may_train_on

    def kept(x: int, y: int, z: int) -> bool:
        steps_held_out = problem_split("add", x, y) != "train" or (
            x + y <= 9 and problem_split("add", x + y, z) != "train"
        )
        return problem_split("add-add", x, y, z) == "train" and not steps_held_out

    triples = [(a, b, c) for a in range(1, 10) for b in range(a, 10) for c in range(b, 10)]
    never = next(
        t for t in triples if problem_split("add-add", *t) == "train" and not any(kept(*o) for o in permutations(t))
    )
    other_order = next(t for t in triples if not kept(*t) and any(kept(*o) for o in permutations(t)))
    trained = may_train_on(load_config("tiny", ["prompts.two_step_share=0.5"]))
    asked = "What is {} plus {} plus {}?"
    assert not trained({"prompt": asked.format(*never)})
    assert trained({"prompt": asked.format(*other_order)})
    assert not may_train_on(load_config("tiny"))({"prompt": asked.format(*other_order)})  # no two-step draws


def test_a_champion_is_compared_by_problem_with_every_scored_set() -> None:
    config = load_config("tiny")
    trained = [{"prompt": "Ana has 5 pens and gets 3 more. How many pens does Ana have now?"}, {"prompt": "hi"}]
    scored = {
        "validation": [{"id": "v0", "prompt": "What is 1 plus 1?"}],
        "test": [{"id": "t0", "prompt": "What is 3 plus 5?"}, {"id": "t1", "prompt": "What is 2 plus 2?"}],
    }
    assert champion_overlaps(config, trained, scored) == [
        (1, "1 row(s) (id 't0': 'What is 3 plus 5?') of the test prompts are problems it was trained on")
    ]
    assert champion_overlaps(config, [], scored) == []
