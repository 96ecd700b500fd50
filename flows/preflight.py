"""Checks every input a validated config names before a campaign writes anything.

The schema (configs/schema.py) checks what the config says; this module checks what the config points
at: prompt files, model directories, the Hugging Face hub, the MLflow tracking URI, the output folder,
the judge's reference bank, the filters' target set, and whether the longest prompt fits the model's context.
`selftrain run`, `validate`, `serve`, `ablation` and `judge-eval` call `preflight` before any MLflow run or
campaign folder exists, so a bad input costs one line on stderr (`selftrain: error: <field or file>: <reason>`),
never a traceback after a round of work. The campaign flow checks again where it runs (`preflight_once`), so a
campaign started from the Prefect UI, a schedule or `selftrain submit`, whose inputs live on the machine that runs
it, fails in one line before it writes anything there.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import struct
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configs.schema import DEFAULT_ANSWER_PATTERN, CampaignConfig, ModelConfig, StorageConfig, TrackingConfig

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tasks.records import Record

HUB_PROBE_SECONDS = 3.0  # an unreachable hub otherwise costs ~75 s of retries, then a traceback
MIN_FREE_BYTES = 100 * 2**20  # adapters, round data and the MLflow store need at least this much
MAX_PROMPT_CHARS = 16_000  # a prompt in a file longer than this needs limits.allow_large
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
_TRUE = {"1", "on", "yes", "true"}  # huggingface_hub's reading of boolean environment variables
HIDDEN_ANSWER = {"test": "a test answer", "ood": "an OOD answer"}  # what a message shows of a held-out answer


class PreflightError(ValueError):
    """An input the config points at cannot be used; the message names the field or file and the reason."""


_PASSED: set[str] = set()  # configs (as JSON) this process has checked: `preflight_once` skips them
_MODEL_READ: set[str] = set()  # those whose model was on disk, so the checks of its files ran in full


def preflight(config: CampaignConfig) -> None:
    """Check the inputs that live outside the config, before any run or folder is created.

    Raises:
        ValueError or its subclasses (PreflightError, PromptFileError, ModelSourceError, BankError) naming the
            field, file or line at fault and the reason.
    """
    check_output_dir(config.tracking)
    check_model_cache()
    check_policy_cache_size()
    check_storage(config.storage)
    check_tracking_uri(config.tracking)
    from tasks.prompt_files import shared_reads  # after the cheap checks: the prompt checks load it anyway

    with shared_reads():  # a prompt file is read once, however many of the checks below ask for its rows
        check_inputs(config)
    _PASSED.add(config.model_dump_json())
    if model_on_disk(config):
        _MODEL_READ.add(config.model_dump_json())


def check_inputs(config: CampaignConfig) -> None:
    """`preflight`'s checks of the prompts, bank, filter targets, models and lengths, once the output folder,
    storage and tracking URI have passed."""
    draw = campaign_draws(config)  # each split drawn (or read) once, for every check that needs it
    extra_sets = check_prompts(config, draw)
    check_answer_form(config, draw, extra_sets)
    train_rows = functools.cache(functools.partial(_file_train_rows, config))  # read once, if a check needs it
    check_extra_set_leak(config, extra_sets, train_rows)
    check_ood_leak(config, draw)
    check_judge_bank(config, train_rows, functools.partial(scored_draws, draw, extra_sets))
    check_filter_targets(config, train_rows)
    check_training_targets(config, train_rows)
    for field, model in models_of(config):
        check_model(field, model)
    if config.judge.reward_model:
        check_reward_model(config.judge.reward_model)
    check_model_files(config, draw)


def check_model_files(config: CampaignConfig, draw: Callable[[str], list[Record]]) -> None:
    """The checks that read the campaign model's files, each skipped while they are not on disk (`model_on_disk`):
    the prompts against its context, `train.target_modules` against its modules, the worked answers against the
    response lengths, `prompts.chat` against its tokenizer."""
    check_context(config, draw)
    check_target_modules(config)
    check_answer_length(config, draw)
    check_chat_template(config)


def campaign_draws(config: CampaignConfig) -> Callable[[str], list[Record]]:
    """The campaign's prompts of a split as its first round sees them (`tasks.prompts.campaign_prompts`: the fixed
    validation, test and OOD draws, round 1's training draw), drawn or read on first use and kept."""
    from tasks.prompts import campaign_prompts

    return functools.cache(functools.partial(campaign_prompts, config, round_index=1))


def scored_draws(draw: Callable[[str], list[Record]], extra_sets: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """The sets the campaign scores (`tasks.leakage.scored_sets`) from its held-out draws and its extra sets."""
    from tasks.leakage import HELD_OUT, scored_sets

    return scored_sets({split: draw(split) for split in HELD_OUT}, extra_sets)


def preflight_once(config: CampaignConfig) -> None:
    """`preflight`, unless this process has already checked this config (the CLI did, before starting the flow).

    Raises:
        As `preflight`.
    """
    if config.model_dump_json() not in _PASSED:
        preflight(config)


def check_prepared_model(config: CampaignConfig) -> None:
    """`check_model_files` again once the campaign has prepared the model, when `preflight` found it not on disk
    and they skipped (an unconverted packaged Gemma, a hub model not in the cache): a response length that cuts
    the worked answers would otherwise cost a campaign that scores nothing and says nothing, as a cut answer
    fails the strict check however right it is.

    Raises:
        PreflightError: as those checks in `preflight`.
    """
    if config.model_dump_json() in _MODEL_READ:
        return
    from tasks.prompt_files import shared_reads

    with shared_reads():
        check_model_files(config, campaign_draws(config))
    if model_on_disk(config):
        _MODEL_READ.add(config.model_dump_json())


def model_on_disk(config: CampaignConfig) -> bool:
    """Whether the campaign model's files are at hand without converting or downloading it, so the checks that
    read them run in full (the tiny model's tokenizer is trained again from its corpus, its shape is known)."""
    return config.model.source == "tiny" or model_tokenizer_file(config) is not None


def model_named(model: ModelConfig) -> str:
    """The fields that name a model, as a message shows them: `model.source=hub model.name=org/id`."""
    return f"model.source={model.source}" + (f" model.name={model.name}" if model.name else "")


def check_ray_cluster(config: CampaignConfig) -> None:
    """Raise when `scale.ray_address` names a Ray cluster that does not answer and a step would shard onto it
    (`generate.shards` or `evaluate.shards` above 1), within `scale.connect_timeout`.

    A server, not an input: `preflight` (and `selftrain validate`) leaves it alone, and the campaign flow asks
    before its folder and MLflow run exist, where a round's first sharded step found it after the start's
    evaluations (minutes on Gemma).

    Raises:
        ConnectionError: nothing answered at the address; ValueError: an address of no host:port form.
    """
    scale = config.scale
    if not scale.ray_address or max(config.generate.shards, config.evaluate.shards) <= 1:
        return
    from tasks.sharding import check_ray_address

    check_ray_address(scale.ray_address, scale.connect_timeout)


def models_of(config: CampaignConfig) -> list[tuple[str, ModelConfig]]:
    """(field prefix, model config) for every model the campaign names."""
    found = [("model", config.model)]
    if config.judge.model is not None:
        found.append(("judge.model", config.judge.model))
    if config.judge.cascade is not None:
        found.append(("judge.cascade.model", config.judge.cascade.model))
    return found


def check_output_dir(cfg: TrackingConfig) -> None:
    """Raise unless `tracking.output_dir` is a writable folder or can be created as one (nothing is created)."""
    check_folder(f"tracking.output_dir={cfg.output_dir}", Path(cfg.output_dir))


def check_model_cache() -> None:
    """Raise unless the model cache (`SELFTRAIN_CACHE`, else ~/.cache/selftrain), where models are built or
    converted and their content hashes kept, is a writable folder or can be created as one."""
    from tasks.base_model import cache_root

    variable = os.environ.get("SELFTRAIN_CACHE")
    check_folder(f"SELFTRAIN_CACHE={variable}" if variable else "the model cache", cache_root())


def check_policy_cache_size() -> None:
    """Raise when `SELFTRAIN_POLICY_CACHE` is not a whole number of 0 or more (it is read at the first policy load,
    mid-round)."""
    from models.cache_size import cache_size

    try:
        cache_size()
    except ValueError as error:
        raise PreflightError(str(error)) from None


def check_storage(cfg: StorageConfig) -> None:
    """Raise unless `storage.base`, when it names a folder here (a path or a file:// URL), is a writable folder
    or can be created as one; an object-store URL is mirrored to from a folder under tracking.output_dir."""
    if cfg.base and not cfg.mirrored:
        check_folder(f"storage.base={cfg.base}", Path(cfg.base.removeprefix("file://")))


def expanded(where: str, path: Path) -> Path:
    """`path` with a leading `~` or `~user` expanded; a user with no home directory is `where`'s error."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise PreflightError(f"{where}: {path.parts[0]} names no user with a home directory") from None


def check_folder(where: str, folder: Path) -> None:
    """Raise unless `folder` is a writable folder, or can be created as one, on a disk with room left."""
    path = expanded(where, folder).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise PreflightError(f"{where}: is a file, not a folder")
    if not existing.is_dir():
        raise PreflightError(f"{where}: cannot be created, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "is not writable" if existing == path else f"cannot be created, {existing} is not writable"
        raise PreflightError(f"{where}: {verb}")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise PreflightError(f"{where}: only {free // 2**20} MB free on its disk (a campaign needs at least 100 MB)")


def check_tracking_uri(cfg: TrackingConfig) -> None:
    """Raise unless MLflow has a store for the tracking URI's scheme and would open it (an MLflow server: answers).

    The list of schemes is MLflow's own store registry, so a plug-in store registered by another package
    is accepted too. A plain path or `file:` URI needs MLFLOW_ALLOW_FILE_STORE=true in MLflow 3.
    """
    if not cfg.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        # The embedded sqlite store in output_dir, whose folder check_output_dir checked.
        where = (
            f"tracking: {Path(cfg.output_dir) / 'mlflow.db'} (the MLflow store in tracking.output_dir={cfg.output_dir})"
        )
        check_sqlite_store(where, Path(cfg.output_dir) / "mlflow.db")
        return
    # Imported past that return: `selftrain validate` of a default config does not load MLflow (flows/cli.py).
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import get_uri_scheme

    from tasks.tracking_store import sqlite_file, tracking_uri

    uri = tracking_uri(cfg)
    where = f"tracking.tracking_uri={uri}" if cfg.tracking_uri else f"MLFLOW_TRACKING_URI={uri}"
    try:
        scheme = get_uri_scheme(uri)
    except MlflowException as err:
        raise PreflightError(f"{where}: {_first_line(err.message)}") from None
    except ValueError as err:  # urllib's own: "Invalid IPv6 URL"
        raise PreflightError(f"{where}: {err}") from None
    known = _tracking_store_registry._registry  # scheme -> store builder, as MLflow resolves it
    if scheme not in known:
        names = ", ".join(sorted(s for s in known if s))
        raise PreflightError(f"{where}: unknown tracking URI scheme {scheme!r} (MLflow knows {names})")
    if scheme in ("", "file") and not MLFLOW_ALLOW_FILE_STORE.get():
        raise PreflightError(
            f"{where}: MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true; "
            "use sqlite:///<folder>/mlflow.db (the default when tracking_uri is empty)"
        )
    if scheme in ("http", "https") and not reachable(uri.rstrip("/") + "/health", HUB_PROBE_SECONDS):
        raise PreflightError(
            f"{where}: no MLflow server answers there within {HUB_PROBE_SECONDS:g} s "
            "(start one: `bash infra/start-stack.sh start`, or `mlflow server`; see README 'Running on servers')"
        )
    try:
        database = sqlite_file(uri) if scheme == "sqlite" else None
    except ValueError:
        raise PreflightError(f"{where}: not a sqlite URL (expected sqlite:///<folder>/mlflow.db)") from None
    if database is not None:
        check_folder(f"{where} (folder {database.parent})", database.parent)
        check_sqlite_store(f"{where}: {database}", database)
    if scheme in ("", "file"):  # MLflow makes the store's folder on first use, with a traceback if it cannot
        store = Path(local_file_uri_to_path(uri) if scheme == "file" else uri)
        check_folder(f"{where} (folder {store})", store)


def check_sqlite_store(where: str, database: Path) -> None:
    """Raise when `database` exists but is no SQLite database: MLflow's "file is not a database" came mid-run,
    after tracebacks, without the file's name. Only its first 16 bytes are read (SQLite's header, "SQLite format
    3" and a NUL: https://www.sqlite.org/fileformat.html); an empty file is an empty database to SQLite.

    Args:
        where: What the message starts with, naming the file and the setting that points at it.
        database: The store's file; absent, MLflow creates it.
    """
    if not database.exists():
        return
    if database.is_dir():
        raise PreflightError(f"{where} is a directory, not an SQLite database")
    try:
        with open(database, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError as error:
        raise PreflightError(f"{where} cannot be read ({error.strerror or error})") from None
    if head and head != SQLITE_HEADER:
        raise PreflightError(
            f"{where} is not an SQLite database (it starts with {head!r}, not SQLite's header); move it away or "
            "name another store"
        )


def check_prompts(config: CampaignConfig, draw: Callable[[str], list[Record]]) -> dict[str, list[Record]]:
    """Read prompt files and draw the built-in problems once (`draw`), so sizes and files fail before any run.

    Returns:
        The `evaluate.extra_sets` rows by name, for the checks that compare them.
    """
    from tasks.prompts import check_prompt_sources, few_shot_prefix, load_extra_sets, split_size

    limit = None if config.limits.allow_large else MAX_PROMPT_CHARS
    for note in check_prompt_sources(config.prompts, max_chars=limit):
        print(f"selftrain: note: {note}", file=sys.stderr)
    extra_sets = load_extra_sets(config)  # an extra evaluation set that does not load fails here, in one line
    few_shot_prefix(config)  # a file-backed campaign may lack answered rows for its examples
    if config.prompts.source != "arithmetic":
        return extra_sets
    for split in ("validation", "test", "ood", "train"):
        try:
            draw(split)
        except ValueError as err:
            raise PreflightError(
                f"prompts.{split}_size={split_size(config, split)}: {err}; widen prompts.min_operand.."
                "prompts.max_operand, add operations or ask for fewer prompts"
            ) from None
    return extra_sets


def check_answer_form(
    config: CampaignConfig, draw: Callable[[str], list[Record]], extra_sets: dict[str, list[Record]]
) -> None:
    """Refuse a scored answer that `judge.answer_pattern` can never read as given (a prompt file's validation or
    test row, an extra set's row): the strict check compares the pattern's group with it, so a response could
    never earn its credit ("ten" under the default pattern, which reads an integer).

    Each answer is tried in the canonical form (`stated_answer`: " The answer is <answer>."); a pattern that reads
    no answer of a set in that form asks for another form, and the set is left unchecked.
    """
    sets: list[tuple[str, list[Record]]] = []
    prompts = config.prompts
    if prompts.source == "file":
        sets.append((str(prompts.validation_path or prompts.train_path), draw("validation")))
        if prompts.test_path:
            sets.append((str(prompts.test_path), draw("test")))
    sets += [(str(extra.path), extra_sets.get(extra.name, [])) for extra in config.evaluate.extra_sets]
    for path, rows in sets:
        check_answers_read(
            path, rows, config.judge.answer_pattern, "scored answers", "no response could earn their credit"
        )


def check_answers_read(path: str, rows: Sequence[Mapping[str, Any]], pattern: str, what: str, so: str) -> None:
    """Refuse `rows` (of the file `path`) whose `answer` `pattern` can never read as given: each is tried in the
    canonical form (`stated_answer`: " The answer is <answer>."). A pattern other than the default that reads none
    of them asks for another form, and they are left unchecked. `what` names the answers, `so` what follows."""
    from tasks.judging.verifier import is_correct, stated_answer
    from tasks.prompt_files import place_of, row_places

    answered = [row for row in rows if row.get("answer") is not None]
    unread = [row for row in answered if not is_correct(stated_answer(row["answer"]), row["answer"], pattern)]
    if not unread or (len(unread) == len(answered) and pattern != DEFAULT_ANSWER_PATTERN):
        return
    places = row_places(path)
    shown = "; ".join(f"{place_of(places, row.get('id'))}: {str(row['answer'])[:40]!r}" for row in unread[:3])
    more = "; ..." if len(unread) > 3 else ""
    raise PreflightError(
        f"{path}: {len(unread)} of {len(answered)} {what} ({shown}{more}) are not what judge.answer_pattern reads "
        f"as an answer, so {so}; write them as it reads one (the default pattern: an integer), or set "
        "judge.answer_pattern"
    )


def check_solutions_agree(path: str, rows: Sequence[Mapping[str, Any]], pattern: str) -> None:
    """Refuse a row of the training file `path` whose worked `solution` states a final answer (read with `pattern`,
    as the verifier reads a response) other than the row's own `answer`: a gold row or a few-shot example made of it
    would teach the wrong answer. A solution the pattern reads no answer from is not compared.

    Raises:
        PromptFileError: at the row's line (Parquet: row), naming both answers and the id.
    """
    from tasks.judging.verifier import final_answer, same_answer
    from tasks.prompt_files import PromptFileError, row_places

    for row in rows:
        solution, answer = row.get("solution"), row.get("answer")
        stated = final_answer(str(solution), pattern) if solution and answer is not None else None
        if stated is None or same_answer(stated, answer):
            continue
        line, unit = row_places(path).get(str(row.get("id")), (None, "line"))
        reason = (
            f"the solution ends with answer {stated}, but 'answer' is {answer} (id {row.get('id')!r}); a gold row or "
            "worked example made of it would teach the wrong answer: correct one of them"
        )
        raise PromptFileError(path, reason, line, unit)


def check_extra_set_leak(
    config: CampaignConfig, extra_sets: dict[str, list[Record]], train_rows: Callable[[], list[dict]]
) -> None:
    """Refuse an extra evaluation set (`extra_sets`, its rows by name) sharing more than `prompts.max_overlap`
    problems with what training may draw (a file-backed campaign's training rows, `train_rows`; the built-in task's
    training problems in reach; `tasks.leakage`), and note a smaller overlap."""
    from tasks.leakage import extra_set_overlaps
    from tasks.prompts import within_max_overlap

    for path, count, reason in extra_set_overlaps(config, extra_sets, train_rows):
        note = within_max_overlap(path, count, reason, config.prompts.max_overlap)
        print(f"selftrain: note: {note}", file=sys.stderr)


def check_ood_leak(config: CampaignConfig, draw: Callable[[str], list[Record]]) -> None:
    """Refuse a built-in OOD slice sharing more than `prompts.max_overlap` problems with what training may draw
    (`tasks.leakage.ood_overlap`), and note a smaller overlap: a slice the policy trained on is not
    out-of-distribution."""
    from tasks.leakage import ood_overlap
    from tasks.prompts import within_max_overlap

    found = ood_overlap(config, draw("ood"))
    if found is not None:
        note = within_max_overlap(f"prompts.ood_size={config.prompts.ood_size}", *found, config.prompts.max_overlap)
        print(f"selftrain: note: {note}", file=sys.stderr)


def _file_train_rows(config: CampaignConfig) -> list[dict]:
    """The training split of a file-backed campaign, as the round will draw from it."""
    from tasks.prompts import file_split

    return file_split(config.prompts, "train")


def check_judge_bank(
    config: CampaignConfig, train_rows: Callable[[], list[dict]], scored: Callable[[], dict[str, list[Record]]]
) -> None:
    """Read `judge.bank_path` as the judge step will (bank=file: too few rows or one label fail here), and refuse a
    reference judge with bank=rounds whose first round cannot label `judge.references` rows (too few training
    prompts with an answer). `train_rows` gives a file-backed campaign's training split, `scored` the sets the
    campaign scores (`tasks.leakage.scored_sets`), which a bank file must not share problems with."""
    from tasks.judging.reference_bank import check_round_one_bank, numbered_file_bank

    cfg, prompts = config.judge, config.prompts
    if not cfg.reads_bank:
        return
    if cfg.bank == "file":
        check_bank_leak(config, numbered_file_bank(cfg), scored())
        return
    if prompts.source == "file":
        answered = len({row["id"] for row in train_rows() if row.get("answer") is not None})
        source = f"prompts.train_path={prompts.train_path}"
    else:
        answered, source = prompts.train_size, f"prompts.train_size={prompts.train_size}"
    check_round_one_bank(cfg, answered, prompts.train_size, config.generate.k, source)


def check_bank_leak(
    config: CampaignConfig, numbered_bank: list[tuple[int, Record]], scored: dict[str, list[Record]]
) -> None:
    """Refuse a reference bank file (its rows with their lines, `numbered_bank`) sharing more than
    `prompts.max_overlap` problems with any set the campaign scores (`scored`: validation, test, OOD, extra sets;
    `tasks.leakage`), and note a smaller overlap."""
    from tasks.judging.reference_bank import BankError
    from tasks.leakage import bank_overlaps

    path, allowed = config.judge.bank_path, config.prompts.max_overlap
    for count, reason in bank_overlaps(config, numbered_bank, scored):
        if count > allowed:
            why = "a judge that learns a scored prompt's labelled answer picks training rows by it"
            raise BankError(f"judge.bank_path={path}: {reason}; {why}; at most prompts.max_overlap={allowed} allowed")
        print(
            f"selftrain: note: judge.bank_path={path}: {reason}; allowed by prompts.max_overlap={allowed}",
            file=sys.stderr,
        )


def check_filter_targets(config: CampaignConfig, train_rows: Callable[[], list[dict]]) -> None:
    """Refuse `color` and `dsir` filters when the training file (`train_rows`) has no row with a gold solution to
    draw their target set from (the built-in task's prompts all have one)."""
    from configs.schema_filters import ColorFilter, DsirFilter

    targets = [f for f in config.select.filters if isinstance(f, ColorFilter | DsirFilter)]
    if config.prompts.source != "file" or not targets:
        return
    from tasks.filters import check_target_source
    from tasks.select import gold_draw  # MLflow and Prefect come with it: only for a config that needs the check

    source = f"prompts.train_path={config.prompts.train_path}"
    check_target_source(config.select.filters, train_rows(), source, gold_draw(config))


def check_training_targets(config: CampaignConfig, train_rows: Callable[[], list[dict]]) -> None:
    """Refuse a training file (`train_rows`) that gives a campaign nothing to train on: no row with an `answer`
    when the verifier judges samples (or GRPO rewards them) against it, fewer answered rows than one GRPO generation
    batch takes (TRL forms no batch from fewer), a worked `solution` whose final answer is not its row's
    (`check_solutions_agree`), no row that can be a gold row when
    `select.gold_examples` asks for some, or answers `judge.answer_pattern` cannot read (`check_answers_read`: a
    sample is verified, and a gold row made, from them). Every round would run and train nothing, or train what the
    strict check never credits (the built-in task's prompts all have both, in form)."""
    if config.prompts.source != "file":
        return
    from tasks.prompt_files import load_prompt_file

    train_file = load_prompt_file(str(config.prompts.train_path))  # the carved validation rows too: one file's labels
    check_solutions_agree(str(config.prompts.train_path), train_file, config.judge.answer_pattern)
    source = f"prompts.train_path={config.prompts.train_path}"
    if config.judge.kind == "verifier":
        needs_answers = "judge.kind=verifier scores each sample against"
    elif config.train.method == "grpo":
        needs_answers = "train.method=grpo rewards each sample against"
    else:
        needs_answers = ""
    if needs_answers and not any(row.get("answer") is not None for row in train_rows()):
        from tasks.prompts import all_carved, file_split

        carved = [] if config.prompts.validation_path else file_split(config.prompts, "validation")
        if carved:  # the file has answers, but not one stayed in the training split
            raise PreflightError(f"{source}: {all_carved(len(carved), f'{needs_answers} an answer')}")
        raise PreflightError(f"{source}: no row has an 'answer', and {needs_answers} it: add answers to the file")
    batch = config.train.grpo_batch_prompts
    answered = len({row["id"] for row in train_rows() if row.get("answer") is not None})
    if config.train.method == "grpo" and answered < batch:  # the schema's check sees prompts.train_size alone
        raise PreflightError(
            f"{source}: train.method=grpo samples {batch} prompts per generation batch "
            "(train.grpo.generation_batch_size or train.batch_size over train.grpo.num_generations), and the training "
            f"split has {answered} rows with an answer: add answered rows or lower the batch"
        )
    if needs_answers or config.select.gold_examples > 0:
        check_answers_read(
            str(config.prompts.train_path),
            train_rows(),
            config.judge.answer_pattern,
            "training answers",
            "no sample could be verified against them, and a gold row made of one would teach an answer the strict "
            "check never credits",
        )
    if config.select.gold_examples > 0:
        from tasks.select import gold_draw  # MLflow and Prefect come with it: only for a config that needs the check

        if not gold_draw(config)(train_rows(), 1, seed=0):
            what = (
                "a 'solution' that shows right working (judge.require_work: a bare answer is no gold row)"
                if config.requires_work
                else "an 'answer' or a 'solution'"
            )
            raise PreflightError(
                f"select.gold_examples={config.select.gold_examples}: no row of {source} has {what} to be a gold "
                "row; add them to the file or set select.gold_examples: 0"
            )


def check_model(field: str, model: ModelConfig) -> None:
    """Raise unless the model the config names can be loaded: installed, a model directory, or on the hub."""
    if model.source == "packaged-gemma":
        from models.gemma import PackagedModelError, check_package

        try:
            check_package()
        except PackagedModelError as error:
            raise PreflightError(f"{field}.source packaged-gemma: {error}") from None
    elif model.source == "local":
        where = f"{field}.name={model.name}"
        check_model_dir(where, expanded(where, Path(str(model.name))))
    elif model.source == "hub":
        check_hub_model(f"{field}.name", str(model.name))


def check_reward_model(name: str) -> None:
    """judge.reward_model: a local directory holding a model, else a hub id that can be fetched."""
    where = f"judge.reward_model={name}"
    path = expanded(where, Path(name))
    if path.exists():
        check_model_dir(where, path)
    else:
        check_hub_model("judge.reward_model", name)


def check_model_dir(where: str, path: Path) -> None:
    """Raise unless `path` holds a transformers checkpoint: a config with a model type, weights whose
    headers read and whose sizes match, and tokenizer files. Cheap: no weights are loaded."""
    if not path.exists():
        raise PreflightError(f"{where}: no such directory")
    if not path.is_dir():
        raise PreflightError(f"{where}: is a file, not a model directory")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise PreflightError(f"{where}: not a model directory (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise PreflightError(f"{where}: config.json is not valid JSON ({_first_line(str(err))})") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise PreflightError(f"{where}: config.json names no model_type, so transformers cannot load it")
    weights = sorted({p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)})
    if not weights:
        raise PreflightError(f"{where}: no weights (model.safetensors, pytorch_model.bin or a sharded index)")
    for weight in weights:
        if weight.name.endswith(".index.json"):
            _check_index(where, weight)
        elif weight.suffix == ".safetensors":
            problem = safetensors_problem(weight)
            if problem:
                raise PreflightError(f"{where}: {weight.name} {problem}")
        elif weight.stat().st_size == 0:
            raise PreflightError(f"{where}: {weight.name} is empty")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise PreflightError(f"{where}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    tokenizer_json = path / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            json.loads(tokenizer_json.read_bytes())
        except ValueError as err:
            raise PreflightError(f"{where}: tokenizer.json is not valid JSON ({_first_line(str(err))})") from None


def _check_index(where: str, index: Path) -> None:
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (ValueError, OSError, KeyError, TypeError, AttributeError):
        raise PreflightError(f"{where}: {index.name} is not a weight index (no weight_map)") from None
    missing = sorted(s for s in shards if not (index.parent / s).is_file())
    if missing:
        raise PreflightError(f"{where}: {index.name} lists {missing[0]}, which is missing")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read (None when its header parses and its size matches it)."""
    return read_safetensors_header(path)[1]


def read_safetensors_header(path: Path) -> tuple[dict, None] | tuple[None, str]:
    """(its header, None) for a readable .safetensors file, else (None, why it cannot be read).

    Reads the header only: 8 bytes of little-endian length, a JSON header, then the tensors' bytes, whose
    end offsets must fit the file (a truncated copy fails here instead of inside torch).
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(size - 8, 100 * 2**20):
                return None, "is not a safetensors file (bad header length)"
            header = json.loads(handle.read(length))
        ends = [int(t["data_offsets"][1]) for name, t in header.items() if name != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None, "is not a safetensors file (unreadable header)"
    if 8 + length + max(ends, default=0) > size:
        return None, f"is truncated ({size:,} bytes, its header describes {8 + length + max(ends):,})"
    return header, None


def check_hub_model(field: str, name: str) -> None:
    """Raise unless a hub model id is well formed and can be fetched: cached when offline, else reachable.

    With HF_HUB_OFFLINE set the model must be in the local Hugging Face cache. Otherwise the hub is
    probed with a short timeout: unreachable, transformers would retry for over a minute, then fail.
    """
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise PreflightError(
            f"{field}={name}: not a local path, nor a valid hub id ({_first_line(str(err))})"
        ) from None
    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        if not cached:
            raise PreflightError(
                f"{field}={name}: HF_HUB_OFFLINE is set and {name} is not in the local Hugging Face cache "
                "(download it where the hub is reachable, or unset HF_HUB_OFFLINE)"
            )
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if not reachable(endpoint, HUB_PROBE_SECONDS):
        hint = "; it is in the local cache: set HF_HUB_OFFLINE=1 to use it" if cached else ""
        raise PreflightError(f"offline: cannot reach the Hugging Face hub ({endpoint}) for {field}={name}{hint}")


def reachable(url: str, timeout: float) -> bool:
    """Whether any HTTP answer (even an error status) comes back from `url` within `timeout` seconds.

    Run in a thread and joined with the timeout, because the socket timeout does not cover name lookup.
    """
    answered = threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answered.set()
        except urllib.error.HTTPError:
            answered.set()
        except (urllib.error.URLError, OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, daemon=True, name="selftrain-hub-probe")
    thread.start()
    thread.join(timeout)
    return answered.is_set()


def check_context(config: CampaignConfig, draw: Callable[[str], list[Record]] | None = None) -> None:
    """Raise when the longest prompt (few-shot prefix, template) plus the new tokens exceed the model's context.
    `draw` gives a split's prompts (`campaign_draws`, made here when not given).

    Cheap first: a prompt has at most one token per UTF-8 byte (plus a few special tokens) under the
    byte-level and byte-fallback tokenizers these models use, so the tokenizer is loaded only when that
    bound does not already fit. Skipped when the context is not known without loading the model.
    """
    positions, tokenizer_dir = _context_of(config)
    if positions is None:
        return
    from tasks.prompts import few_shot_prefix

    draw = draw or campaign_draws(config)
    prefix = few_shot_prefix(config)
    sampled_with_prefix = config.prompts.few_shot > 0 and config.generate.few_shot_rounds != 0
    checks = [
        ("train", prefix if sampled_with_prefix else "", "generate.max_new_tokens", config.generate.max_new_tokens),
        *(
            (
                split,
                prefix if config.evaluate.few_shot else "",
                "evaluate.max_new_tokens",
                config.evaluate.max_new_tokens,
            )
            for split in ("validation", "test", "ood")
        ),
    ]
    tokenizer = None
    for split, shown_prefix, new_field, new_tokens in checks:
        prompts = draw(split)
        if not prompts:
            continue
        longest = max(prompts, key=lambda row: len(str(row["prompt"]).encode()))
        text = shown_prefix + config.prompts.template.format(prompt=longest["prompt"])
        if len(text.encode()) + 8 + new_tokens <= positions:
            continue
        if tokenizer is None:
            tokenizer = _tokenizer(config, tokenizer_dir)
        if tokenizer is None:
            return
        tokens = len(tokenizer(text, verbose=False)["input_ids"])  # the length is the point: no warning of it
        if tokens + new_tokens > positions:
            raise PreflightError(
                f"{_prompt_place(config, split, longest['id'])}: the longest {split} prompt (id {longest['id']!r}) is "
                f"{tokens} tokens as the model sees it "
                f"({'few-shot prefix, ' if shown_prefix else ''}template); with {new_field}={new_tokens} it "
                f"exceeds the model's context of {positions} positions"
            )


def _prompt_place(config: CampaignConfig, split: str, row_id: str) -> str:
    """Where a prompt of `split` is, for a message: its file and line (or Parquet row) in a file campaign
    (`tasks.prompt_files.row_places`; the carved validation split's rows are in the training file), else
    "prompts"."""
    from tasks.prompt_files import row_places

    cfg = config.prompts
    paths = {"train": cfg.train_path, "validation": cfg.validation_path or cfg.train_path, "test": cfg.test_path}
    path = paths.get(split) if cfg.source == "file" else None
    if path is None:
        return "prompts"
    place = row_places(path).get(row_id)
    return str(path) if place is None else f"{path}, {place[1]} {place[0]}"


def check_answer_length(config: CampaignConfig, draw: Callable[[str], list[Record]] | None = None) -> None:
    """Raise when a worked answer is longer than the new tokens the campaign allows, or a training row (prompt
    and worked answer) longer than `train.max_length`. `draw` gives a split's prompts (`campaign_draws`, made here
    when not given).

    The built-in task's answers are written in its `prompts.working` ("9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74.
    The answer is 74." is 41 Gemma tokens in digits, one per digit; plain ones about 20), a prompt file's in its
    `solution` column; the policy learns to answer as they do, and an answer cut before its final "." fails the
    strict answer check however right it is. The campaign's own rows (every split; a file's rows with a
    solution) are tokenized with the model's tokenizer through `tokenizers` (`answer_tokenizer`; not transformers:
    `selftrain validate` stays light); skipped when it is not at hand without loading or converting a model (an
    unconverted packaged Gemma, a hub model not in the cache).
    """
    prompts = config.prompts
    builtin = prompts.source == "arithmetic"
    # The few-shot baseline's examples in a longer working than the campaign's: its answers must fit too, or the bar
    # it sets is low for no fault of the base's.
    bar = config.few_shot_baseline_config()
    bar_working = bar.prompts.working if builtin and bar.prompts.working not in ("plain", prompts.working) else None
    tokenizer = answer_tokenizer(config)
    if tokenizer is None:
        return
    from tasks.prompts import campaign_prompts, gold_prompts

    def refuse_cut(field: str, new_tokens: int, splits: tuple[str, ...], working: str, drawn: dict) -> None:
        found = [(split, row["solution"]) for split in splits for row in drawn[split]]
        if not found:
            return
        solutions = [solution for _, solution in found]
        lengths = [len(encoding.ids) for encoding in tokenizer.encode_batch(solutions, add_special_tokens=False)]
        longest = max(range(len(solutions)), key=lengths.__getitem__)
        if lengths[longest] > new_tokens:
            cut = sum(length > new_tokens for length in lengths)
            # A test or OOD answer is not printed: the campaign reports on those items, so it shows none of them.
            shown = HIDDEN_ANSWER.get(found[longest][0], repr(solutions[longest]))
            raise PreflightError(
                f"{field}={new_tokens}: {cut} of {len(solutions)} worked answers of the {'/'.join(splits)} "
                f"problems in {working} are longer (the longest, {shown}, is {lengths[longest]} "
                f"tokens), and a cut answer fails the strict answer check: set {field} to at least {lengths[longest]}"
            )

    if bar_working is not None:
        held_out = {split: campaign_prompts(bar, split, 1) for split in ("test", "ood")}
        working = f"evaluate.few_shot_working={bar_working}"
        refuse_cut("evaluate.max_new_tokens", config.evaluate.max_new_tokens, ("test", "ood"), working, held_out)

    def worked(rows: list) -> list:
        return [row for row in rows if row.get("solution")]  # a file's rows may come without one

    draw = draw or campaign_draws(config)
    drawn = {split: worked(draw(split)) for split in ("train", "validation", "test", "ood")}
    working = f"prompts.working={prompts.working}" if builtin else "the prompt files' solution column"
    limits: list[tuple[str, int, tuple[str, ...]]] = [
        ("evaluate.max_new_tokens", config.evaluate.max_new_tokens, ("validation", "test", "ood"))
    ]
    if config.rounds >= config.generate.from_round:  # some round samples
        limits.insert(0, ("generate.max_new_tokens", config.generate.max_new_tokens, ("train",)))
    for field, new_tokens, splits in limits:
        refuse_cut(field, new_tokens, splits, working, drawn)
    # A training row is its prompt and its worked answer; one longer than train.max_length loses its end, the
    # final answer included (two-step problems under prompts.two_step_share run to some 110 Gemma tokens).
    rows = drawn["train"] + worked(gold_prompts(config, config.select.gold_examples))
    if not rows:
        return
    texts = [prompts.template.format(prompt=row["prompt"]) + row["solution"] for row in rows]
    lengths = [len(encoding.ids) + 1 for encoding in tokenizer.encode_batch(texts)]  # and the EOS training adds
    longest = max(range(len(texts)), key=lengths.__getitem__)
    if lengths[longest] > config.train.max_length:
        cut = sum(length > config.train.max_length for length in lengths)
        raise PreflightError(
            f"train.max_length={config.train.max_length}: {cut} of {len(texts)} training rows (prompt and worked "
            f"answer, the gold rows included) are longer (the longest, {texts[longest]!r}, is {lengths[longest]} "
            f"tokens), and a cut row loses its final answer: set train.max_length to at least {lengths[longest]}"
        )


def check_target_modules(config: CampaignConfig) -> None:
    """Raise when `train.target_modules` names no module of the campaign's model (PEFT would refuse it at the
    first training, after a round's sampling). The model's modules are read from its weights' names (the
    safetensors headers); skipped when its files are not at hand without loading or converting it."""
    targets = config.train.target_modules
    if targets == "all-linear":
        return
    modules = model_module_names(config)
    if not modules:
        return
    if isinstance(targets, str):  # PEFT's rule: a string is a regular expression over the full module name
        try:
            matched = any(re.fullmatch(targets, name) for name in modules)
        except re.error as error:
            raise PreflightError(f"train.target_modules={targets}: not a regular expression ({error})") from None
    else:
        matched = any(name == target or name.endswith(f".{target}") for name in modules for target in targets)
    if not matched:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in modules})
        hint = (
            " (a single name is a regular expression over a module's full name, as PEFT reads it; a list names "
            "modules by their last part, e.g. [q_proj, v_proj])"
            if isinstance(targets, str)
            else ""
        )
        raise PreflightError(
            f"train.target_modules={targets}: no module of the model is named so; its modules end in "
            f"{', '.join(leaves)}, or use 'all-linear'{hint}"
        )


def model_module_names(config: CampaignConfig) -> set[str]:
    """The names of the campaign model's weighted modules (empty when its weights are not on disk already)."""
    if config.model.source == "tiny":
        from models.tiny import MODULE_NAMES

        return set(MODULE_NAMES)
    tokenizer_file = model_tokenizer_file(config)
    if tokenizer_file is None:
        return set()
    names: set[str] = set()
    for weights in tokenizer_file.parent.glob("*.safetensors"):
        header = read_safetensors_header(weights)[0]
        if header is not None:  # else check_model names the damaged file
            names.update(key.rsplit(".", 1)[0] for key in header if key != "__metadata__")
    return names


def model_tokenizer_file(config: CampaignConfig) -> Path | None:
    """The campaign model's tokenizer.json when it is on disk already (nothing is converted or downloaded)."""
    model = config.model
    if model.source == "packaged-gemma":
        from models.gemma import converted_path
        from tasks.base_model import cache_root

        directory = converted_path(cache_root() / "models")
    else:
        directory = _context_of(config)[1]
    found = directory / "tokenizer.json" if directory is not None else None
    return found if found is not None and found.is_file() else None


def answer_tokenizer(config: CampaignConfig) -> Tokenizer | None:
    """The campaign model's tokenizer as `tokenizers` reads it, when at hand without loading, converting or building
    a model: the tiny model's trained again from its corpus (what its build trains, in a twentieth of a second),
    another's `tokenizer.json` on disk (`model_tokenizer_file`); None otherwise."""
    if config.model.source == "tiny":
        from models.tiny import train_tokenizer
        from tasks.base_model import tiny_inputs

        return train_tokenizer(tiny_inputs(config)[0])
    tokenizer_file = model_tokenizer_file(config)
    if tokenizer_file is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_file))


def check_chat_template(config: CampaignConfig) -> None:
    """Raise when `prompts.chat` is on and the policy's tokenizer has no chat template.

    Read from the tokenizer's files (`chat_template` in tokenizer_config.json, or chat_template.jinja /
    chat_template.json beside it), without loading it. The tiny model and the packaged Gemma (a base model)
    ship none; a hub model not in the local cache is not checked here.
    """
    if not config.prompts.chat:
        return
    model = config.model
    if model.source in ("local", "hub"):
        found = _chat_template_found(model.source, str(model.name))
        if found is not False:
            return
    raise PreflightError(
        f"prompts.chat: the tokenizer of {model_named(model)} has no chat template to render prompts with; "
        "set prompts.chat: false or use a model whose tokenizer has one"
    )


def _chat_template_found(source: str, name: str) -> bool | None:
    """Whether a local directory or a cached hub model's tokenizer files hold a chat template (None: unknown)."""
    files = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json")
    if source == "local":
        paths: list[Path | None] = [Path(name).expanduser() / file for file in files]
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = [try_to_load_from_cache(name, file) for file in files]
        paths = [Path(c) if isinstance(c, str) else None for c in cached]
        if paths[0] is None:
            return None
    config_file, *template_files = paths
    if any(path is not None and path.is_file() for path in template_files):
        return True
    try:
        return bool(json.loads(Path(str(config_file)).read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _context_of(config: CampaignConfig) -> tuple[int | None, Path | None]:
    """(context length, local directory holding the tokenizer) of the campaign's model, when cheap to know."""
    model = config.model
    if model.source == "tiny":
        from models.tiny import MAX_POSITIONS

        return MAX_POSITIONS, None
    if model.source == "local":
        path = Path(str(model.name)).expanduser()
        return _positions(path / "config.json"), path
    if model.source == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(model.name), "config.json")
        if isinstance(cached, str):
            return _positions(Path(cached)), Path(cached).parent
    # packaged-gemma: 32k positions, more than the sane bounds on templates, prompts and tokens add up to.
    return None, None


def _positions(config_path: Path) -> int | None:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    text_config = config.get("text_config")
    return text_config.get("max_position_embeddings") if isinstance(text_config, dict) else None


def _tokenizer(config: CampaignConfig, directory: Path | None):  # noqa: ANN202 (a transformers tokenizer)
    """The campaign model's tokenizer, loaded from a local directory; the tiny model's is trained again from its
    corpus (`models.tiny.build_tokenizer`: what its build trains, without building the model)."""
    from transformers import AutoTokenizer

    if config.model.source == "tiny":
        from models.tiny import build_tokenizer
        from tasks.base_model import tiny_inputs

        return build_tokenizer(tiny_inputs(config)[0])
    if directory is None:
        return None
    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError):
        return None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""
