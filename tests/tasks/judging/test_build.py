"""Tests of tasks.judging.build: the judge each kind builds, what a kind needs, and the judge config it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config
from configs.schema import JudgeConfig
from models.loading import load_policy
from models.option_scorer import OptionScorer
from tasks.judging.build import build_judge, judge_model, load_option_scorer
from tasks.judging.label_transfer import LabelTransferJudge
from tasks.judging.lm import OPTIONS, PointwiseJudge
from tasks.judging.meta_ranking import RANK_OPTIONS, MetaRankingJudge
from tasks.judging.reward_judge import AllOfJudge, RewardModelJudge
from tasks.judging.verifier import VerifierJudge
from tasks.records import ModelRef

TEMPLATE = "Question: {prompt}\nAnswer:"
REFERENCES = [{"prompt": f"q{i}", "response": " r", "correct": i % 2 == 0} for i in range(4)]


@pytest.fixture(scope="module")
def scorer(tiny_dir: Path) -> OptionScorer:
    """An option scorer over the session's tiny model."""
    return OptionScorer(*load_policy(str(tiny_dir)), OPTIONS, batch_size=4)


def test_the_verifier_needs_nothing() -> None:
    judge = build_judge(JudgeConfig(kind="verifier"), template=TEMPLATE)
    assert isinstance(judge, VerifierJudge) and judge.forward_passes == 0 and judge.seconds == 0.0
    assert judge.score([{"prompt": "q", "response": "The answer is 3.", "answer": "3"}]) == [1.0]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("pointwise", "judge.kind: 'pointwise' needs the judge model's option scorer"),
        ("meta-ranking", "judge.kind: 'meta-ranking' needs the judge model's option scorer"),
        ("reward-model", "judge.kind: 'reward-model' needs a reward model"),
        ("all-of", "judge.kind: 'all-of' needs a reward model"),
    ],
)
def test_a_kind_without_what_it_needs_is_refused_in_one_line(kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        build_judge(JudgeConfig(kind=kind), template=TEMPLATE, references=REFERENCES)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_lm_kinds_take_their_settings_from_the_config(scorer: OptionScorer) -> None:
    pointwise = build_judge(JudgeConfig(kind="pointwise"), template=TEMPLATE, scorer=scorer, preamble="Ex.\n")
    assert isinstance(pointwise, PointwiseJudge) and pointwise.scorer is scorer
    assert (pointwise.template, pointwise.preamble) == (TEMPLATE, "Ex.\n")
    cfg = JudgeConfig(kind="meta-ranking", references=3, swap=True, weak_evidence=0.25)
    meta = build_judge(cfg, template=TEMPLATE, seed=7, scorer=scorer, references=REFERENCES, preamble="Ex.\n")
    assert isinstance(meta, MetaRankingJudge) and meta.bank == REFERENCES
    assert (meta.references, meta.swap, meta.seed, meta.weak, meta.preamble) == (3, True, 7, 0.25, "Ex.\n")
    # Meta Ranking reads A/B from the same loaded model; the yes/no scorer is left as it is.
    assert meta.scorer.options == RANK_OPTIONS and meta.scorer.model is scorer.model and scorer.options == OPTIONS
    scores = meta.score([{"prompt": "x", "response": " 4"}])
    assert len(meta.assignments[0]) == 3 and 0.0 <= scores[0] <= 1.0
    transfer_cfg = cfg.model_copy(update={"kind": "label-transfer", "weight_correct": 2.0, "weight_wrong": 0.5})
    transfer = build_judge(transfer_cfg, template=TEMPLATE, seed=7, scorer=scorer, references=REFERENCES)
    assert isinstance(transfer, LabelTransferJudge) and transfer.scorer is scorer and transfer.weights == (2.0, 0.5)
    with pytest.raises(ValueError, match="non-empty reference bank"):
        build_judge(cfg, template=TEMPLATE, scorer=scorer)


def test_reward_kinds_wrap_the_given_model(trained_reward_model: tuple[Path, list[dict], dict]) -> None:
    folder = str(trained_reward_model[0])
    judge = build_judge(JudgeConfig(kind="reward-model"), template=TEMPLATE, reward_model=folder)
    assert isinstance(judge, RewardModelJudge) and judge.template == TEMPLATE
    both = build_judge(JudgeConfig(kind="all-of", reward_threshold=0.3), template=TEMPLATE, reward_model=folder)
    assert isinstance(both, AllOfJudge) and both.name == "all-of(verifier+reward-model)"
    assert both.thresholds == [1.0, 0.3]


def test_the_judge_model_is_judge_model_else_the_policy_base_without_adapter(tiny_dir: Path) -> None:
    config = load_config("tiny", ["model.source=local", f"model.name={tiny_dir}", "judge.batch_size=8"])
    policy = ModelRef(source="local", base=str(tiny_dir), adapter="/round-02/adapter", sha256="abc")
    assert judge_model(config, policy) == ModelRef(source="local", base=str(tiny_dir), sha256="abc")
    scorer, ref = load_option_scorer(config, policy)
    assert ref.adapter is None and scorer.batch_size == 8
    other = config.model_copy(update={"judge": config.judge.model_copy(update={"model": config.model})})
    assert judge_model(other, policy).base == str(tiny_dir) and judge_model(other, policy).sha256 != "abc"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("judge.kind=oracle", "judge.kind"),
        ("judge.references=0", "judge.references"),
        ("judge.bank=file", "judge.bank_path"),
        ("judge.panel=3", "judge.panel"),
        ("judge.target_precision=1.5", "judge.target_precision"),
        ("judge.calibrate=recall", "judge.calibrate"),
        ("judge.weight_wrong=-1", "judge.weight_wrong"),
        ("judge.weak_evidence=1.5", "judge.weak_evidence"),
        ("judge.model.source=cloud", "judge.model.source"),
        ("judge.cascade.max_new_tokens=8", "judge.cascade.model"),
    ],
)
def test_bad_judge_values_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny-meta-ranking", [override])


def test_a_bank_file_no_judge_would_read_is_refused() -> None:
    # The file would be ignored: the bank comes from the rounds, or the judge reads no bank at all.
    with pytest.raises(ConfigError, match=r"judge.bank_path names a file, and judge.bank is 'rounds', which would"):
        load_config("tiny-meta-ranking", ["judge.bank_path=bank.jsonl"])
    with pytest.raises(ConfigError, match=r"no judge would read it \(judge.kind is 'verifier'\)"):
        load_config("tiny", ["judge.bank=file", "judge.bank_path=bank.jsonl"])
    given = ["judge.kind=reward-model", "judge.reward_model=rm", "judge.bank=file", "judge.bank_path=bank.jsonl"]
    with pytest.raises(ConfigError, match=r"no judge would read it \(judge.reward_model is given\)"):
        load_config("tiny", given)
    for kind in ("pointwise", "meta-ranking", "label-transfer", "reward-model"):  # each builds a bank
        assert load_config(
            "tiny", [f"judge.kind={kind}", "judge.bank=file", "judge.bank_path=b.jsonl"]
        ).judge.reads_bank


def test_meta_ranking_configs_validate() -> None:
    config = load_config("tiny-meta-ranking")
    assert config.judge.kind == "meta-ranking" and config.judge.model is None
    cascade = load_config("tiny", ["judge.cascade.model.source=tiny", "judge.kind=pointwise"])
    assert cascade.judge.cascade is not None and cascade.judge.cascade.model.source == "tiny"
    assert load_config("judge-eval").model.source == "packaged-gemma"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("judge.reward_threshold=1.5", "judge.reward_threshold"),
        ("judge.kind=reward", "judge.kind"),
        ("judge.reward_batch_size=0", "judge.reward_batch_size"),
        ("judge.all_of_mode=or", "judge.all_of_mode"),
        ("judge.reward_epochs=0", "judge.reward_epochs"),
    ],
)
def test_bad_config_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_config_accepts_reward_kinds() -> None:
    config = load_config("tiny", ["judge.kind=all-of", "judge.reward_threshold=0.7", "judge.reward_model=/m"])
    assert config.judge.kind == "all-of" and config.judge.reward_threshold == 0.7
