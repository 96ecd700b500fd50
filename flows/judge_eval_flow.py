"""The judge-eval flow: label a set (or read one), score it with every judge, and report (`selftrain judge-eval`).

flows/judge_eval.py parses the command and checks the config, then starts this flow; it lives in its own module
because the judges, the policy and MLflow it loads are imported by the command line only to run it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prefect import flow

from configs.loader import flatten
from configs.schema import CampaignConfig
from tasks.records import atomic_write_text

# Of the prompts: reference bank, calibration (Meta Ranking's reference weights), validation (every threshold);
# the rest, half, is the test split.
SHARES = (0.25, 0.125, 0.125)


def labelled_set(config: CampaignConfig, policy_base: str) -> list[dict]:
    """Samples of the base policy on round-1 training prompts (few-shot prefix if configured), verified."""
    from models.loading import load_policy
    from models.sampling import HFSampler
    from tasks.generate import generate_responses
    from tasks.judging.verifier import is_correct
    from tasks.layout import round_seed
    from tasks.progress import Progress
    from tasks.prompts import campaign_prompts, few_shot_prefix, uses_few_shot

    model, tokenizer = load_policy(policy_base)
    rows = generate_responses(
        HFSampler(model, tokenizer),
        campaign_prompts(config, "train", 1),
        config.generate,
        template=config.prompts.template,
        seed=round_seed(config.seed, 1),  # the seed round 1 samples with
        progress=Progress("sample", "samples"),
        prefix=few_shot_prefix(config) if uses_few_shot(config, 1) else "",
    )
    pattern = config.judge.answer_pattern
    return [{**row, "correct": is_correct(row["response"], row.get("answer"), pattern)} for row in rows]


def evaluate(config: CampaignConfig, rows: list[dict], judges: list[str], out: Path, source: str = "") -> dict:
    """Split, score with every judge, print the table, write results and the PNG, log an MLflow run.

    `source` names the labelled set in errors (a bank split Meta Ranking cannot use).
    """
    from tasks.judging.build import build_judge, load_option_scorer
    from tasks.judging.reference_bank import check_bank, draw_panel
    from tasks.judging.report import (
        RESAMPLES,
        bracket_rows,
        compare_with,
        evaluate_judge,
        format_table,
        markdown_table,
        plot_roc,
        split_by_prompt,
    )
    from tasks.progress import emit
    from tasks.prompts import few_shot_prefix, item_problem
    from tasks.tracking import end_run, log_artifact, log_metrics, start_run
    from tasks.train_reward import labelled_reward_model

    cfg = config.judge
    problem_of = item_problem(config)
    bank, calibration, dev, test = split_by_prompt(rows, SHARES, config.seed, problem_of)
    groups = [problem_of(row) for row in test]  # the test rows' problems: the bootstrap resamples them
    if any(name.startswith(("meta-ranking", "label-transfer")) for name in judges):
        check_bank(bank, cfg.references, f"{source}: the bank split")
    scorer, judge_ref = load_option_scorer(config, None)
    panel = draw_panel(bank, cfg.panel, config.seed)
    template = config.prompts.template
    preamble = few_shot_prefix(config) if cfg.examples else ""
    results = {}
    for name in judges:
        reward_model = None
        if name == "reward-model":
            reward_model, trained = labelled_reward_model(
                cfg, bank, judge_ref.base, out / "reward-model", template=template, seed=config.seed, progress=emit
            )
            if trained:
                print(f"judge-eval: reward model trained on {trained['pairs']:.0f} pairs", file=sys.stderr)
        kind = cfg.model_copy(update={"kind": name.removesuffix("-swap"), "swap": name.endswith("swap")})
        judge = build_judge(
            kind,
            template=template,
            seed=config.seed,
            scorer=scorer,
            references=panel,
            reward_model=reward_model,
            preamble=preamble,
        )
        started = time.perf_counter()
        results[name] = evaluate_judge(
            judge,
            dev,
            test,
            calibration=calibration,
            target=cfg.calibrate,
            precision=cfg.target_precision,
            seed=config.seed,
            groups=groups,
        )
        print(f"judge-eval: {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        # Long runs: keep what is done, scores included (the paired comparisons can be redone from them).
        partial = {"test_labels": [bool(r["correct"]) for r in test], "results": results}
        atomic_write_text(out / "partial.json", json.dumps(partial))  # a kill mid-write keeps the last one
    labels = [bool(r["correct"]) for r in test]
    results.update(bracket_rows(labels, config.seed, groups))
    compare_with(results, labels, "pointwise", config.seed, groups)
    wrong_share = 1 - sum(labels) / max(len(labels), 1)
    table = format_table(results, len(test), wrong_share)
    print(table)
    atomic_write_text(out / "results.md", markdown_table(results) + "\n")
    png = plot_roc(results, labels, out / "roc.png", f"{config.name}: judges on {judge_ref.source}")
    figures = {name: {k: v for k, v in r.items() if k != "scores"} for name, r in results.items()}
    summary = {
        "judge_model": judge_ref.model_dump(),
        "split": {
            "bank": len(bank),
            "panel": len(panel),
            "calibration": len(calibration),
            "dev": len(dev),
            "test": len(test),
            "test_problems": len(set(groups)),
        },
        "resamples": RESAMPLES,
        "test_wrong_share": wrong_share,
        "results": figures,
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
    run_id = start_run(
        config.tracking,
        f"{config.name}-judge-eval",
        params={**flatten(config), "judges": ",".join(judges), "test_rows": str(len(test))},
        tags={"selftrain.kind": "judge-eval"},
    )
    metrics = {f"judge_eval/{name}/{k}": float(v) for name, r in figures.items() for k, v in r.items()}
    log_metrics(config.tracking, [run_id], metrics, step=0)
    for path in (png, out / "results.json", out / "results.md", out / "labelled.jsonl"):
        log_artifact(config.tracking, run_id, path)
    end_run(config.tracking, run_id)
    print(f"\n{table.splitlines()[0]}; ROC curves: {png}; MLflow run {run_id}")
    return summary


@flow(name="selftrain-judge-eval", flow_run_name="{config.name}")
def judge_eval_flow(config: CampaignConfig, judges: list[str], out: str, labelled: str | None = None) -> dict:
    """Label a set (or read `labelled`), score it with every judge and report into `out` and an MLflow run.

    Args:
        config: The checked config (its judge and model sections).
        judges: Names from `JUDGES` and `OPTIONAL_JUDGES`.
        out: Folder for the labelled set, the results and the ROC PNG.
        labelled: A JSONL file with prompt, response and correct; None samples the base policy and verifies.

    Returns:
        The summary written to `results.json`.
    """
    from models.loading import set_torch_threads
    from tasks.base_model import prepare_base
    from tasks.judging.reference_bank import load_bank_file

    set_torch_threads(config.model.torch_threads)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = load_bank_file(labelled) if labelled else labelled_set(config, prepare_base(config).base)
    copy = folder / "labelled.jsonl"
    if not (labelled and copy.exists() and Path(labelled).resolve() == copy.resolve()):  # never rewrite the input
        atomic_write_text(copy, "".join(json.dumps(row) + "\n" for row in rows))
    return evaluate(config, rows, judges, folder, labelled or "the sampled labelled set")
