"""The offline benchmark: backbone, baselines and LLM-InS (with ablations) on one split.

Reproduces the layout of the paper's tables: Recall@20 and NDCG@20 on the overall, cold and
warm tasks for every method, mean and spread over seeds, with the wall time of every stage.
The worker command ``python -m services.worker benchmark`` is a thin shell around
:func:`run_benchmark`; a notebook can call it directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.baselines import GENERATOR_GRID
from models.baselines.aldi import AldiConfig, fit_aldi
from models.baselines.common import ColdStartEmbeddings, best_on_validation
from models.baselines.deepmusic import fit_deepmusic
from models.baselines.generator import GeneratorConfig
from models.data.dataset import SPLIT_NAMES, ColdStartDataset
from models.encoders import MeanPoolEncoder, encode_cached
from models.evaluation import TASKS, evaluate, evaluate_per_user, summarize
from models.llmins.pipeline import PRECISION_DEPTH, warm_up
from models.llmins.variants import VARIANTS
from models.llmins.workbench import Workbench
from models.plots import plot_metrics, plot_projection
from models.runs import Backbone, RunConfig, StageTimer, library_versions, train_backbone

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("backbone", "deepmusic", "aldi", *VARIANTS)
#: What a run does without ``methods``: everything but ``llmins-paper``, whose simulator
#: scores every candidate of every cold item (about 68,000 prompts on CiteULike: 25 min of
#: CPU), so it is asked for by name.
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m != "llmins-paper")
REPORTED_METRICS: tuple[str, ...] = ("recall@20", "ndcg@20")
#: Per method and seed, each test user's metrics (``<method>-seed<k>.npz``).
PER_USER_DIR = "per_user"


def per_user_name(method: str, seed: int) -> str:
    """The file, in a run's :data:`PER_USER_DIR`, of one method's per-user scores on a seed."""
    return f"{method}-seed{seed}.npz"


#: Tasks where ``llmins`` is compared with every other method, paired over test users.
PAIRED_TASKS: tuple[str, ...] = ("overall", "cold")


@dataclass(frozen=True)
class BenchmarkConfig(RunConfig):
    """Everything a benchmark run depends on besides the data set: a run's backbone,
    encoder and LM settings (:class:`models.runs.RunConfig`), and:

    Attributes:
        simulator_examples: training prompts of the simulator (None: each variant's own).
        generator_config: None lets each baseline choose its settings from
            ``models.baselines.GENERATOR_GRID`` on the cold validation items; a value is
            the one setting every baseline trains with (for sweeps).
        methods: names from :data:`METHODS`, run in this order.
        seeds: one full run (backbone training included) per seed.
        cache_dir: where content vectors are cached (None: no cache).
        export_embeddings: also write users.npy/items.npy and the split per seed.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0,)
    generator_config: GeneratorConfig | None = None
    aldi_config: AldiConfig = AldiConfig()
    simulator_examples: int | None = None
    cache_dir: str | None = None
    export_embeddings: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        super().__post_init__()


#: Loads the data set for a seed (a published split ignores the seed).
DatasetLoader = Callable[[int], ColdStartDataset]


def run_benchmark(load: DatasetLoader, config: BenchmarkConfig, out_dir: str | Path) -> list[dict]:
    """Run every method for every seed; write ``results.json`` and ``report.md`` to ``out_dir``.

    Returns the result records (one per method and seed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    encoder: MeanPoolEncoder | None = None
    for seed in config.seeds:
        timer = StageTimer()
        with timer.stage("load"):
            dataset = load(seed)
        logger.info("data set %s", dataset.summary())
        with timer.stage("encode"):
            encoder = encoder or MeanPoolEncoder(config.encoder_path)
            content = encode_cached(encoder, dataset.item_texts, config.cache_dir, config.progress)
        with timer.stage("backbone"):
            backbone, training = train_backbone(dataset, config, seed)
        users, items = backbone.model.export_embeddings()
        if config.export_embeddings:
            export_split(dataset, out / "split" / f"seed{seed}")
        bench = Workbench(
            dataset, content, users, items, seed, config.simulator, progress=config.progress
        )
        for method in config.methods:
            method_timer = StageTimer(dict(timer.seconds))
            with method_timer.stage(f"fit:{method}"):
                result = fit_method(method, dataset, content, bench, backbone, config, seed)
            with method_timer.stage(f"evaluate:{method}"):
                per_user = evaluate_per_user(dataset, result.users, result.items, stage="test")
                test = {task: summarize(*per_user[task]) for task in TASKS}
                val = evaluate(dataset, result.users, result.items, stage="val")
            save_per_user(per_user, out / PER_USER_DIR / per_user_name(method, seed))
            if config.export_embeddings:
                export_embeddings(result, out / method / f"seed{seed}")
            if seed == config.seeds[0]:
                (out / "plots").mkdir(exist_ok=True)
                plot_projection(
                    result.items,
                    dataset.warm_items,
                    np.union1d(dataset.cold_val_items, dataset.cold_test_items),
                    out / "plots" / f"projection-{method}.png",
                    f"{method} ({config.backbone}): item embeddings, first two PCs of warm",
                )
            record = {
                "dataset": dataset.name,
                "backbone": config.backbone,
                "method": method,
                "seed": seed,
                **{task: test[task] for task in TASKS},
                "val": val,
                "seconds": method_timer.seconds,
                "backbone_training": training,
                "method_info": result.info,
                "data": {**dataset.summary(), "fingerprint": dataset.fingerprint},
                "encoder": str(encoder.model_path),
                "config": {
                    "backbone": config.backbone_config.to_dict(),
                    "train": config.train_config.to_dict(),
                },
                "versions": library_versions(),
            }
            records.append(record)
            logger.info("%s seed %d: %s", method, seed, _one_line(record))
            write_results(records, out)
    return records


def fit_method(
    method: str,
    dataset: ColdStartDataset,
    content: np.ndarray,
    bench: Workbench,
    backbone: Backbone,
    config: BenchmarkConfig,
    seed: int,
) -> ColdStartEmbeddings:
    """Embeddings of one method on top of the trained backbone's."""
    users, items = bench.users, bench.items
    if method in VARIANTS:
        variant = VARIANTS[method]
        if config.simulator_examples:
            training = replace(variant.simulator_training, examples=config.simulator_examples)
            variant = replace(variant, simulator_training=training)
        return warm_up(bench, variant, backbone)
    if method == "backbone":
        return ColdStartEmbeddings(users, items, {"note": "cold items keep untrained embeddings"})
    if method not in GENERATOR_GRID:
        raise ValueError(f"unknown method {method!r}")
    if method == "deepmusic" and config.generator_config is None:
        return bench.deepmusic  # the same grid and seed: llmins' prior may have fitted it
    grid = (config.generator_config,) if config.generator_config else GENERATOR_GRID[method]
    return fit_baseline(method, dataset, content, users, items, grid, config, seed)


def fit_baseline(
    method: str,
    dataset: ColdStartDataset,
    content: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    grid: Sequence[GeneratorConfig],
    config: BenchmarkConfig,
    seed: int,
) -> ColdStartEmbeddings:
    """DeepMusic or ALDI trained with each setting of ``grid``; the best on cold validation."""

    def fit(generator: GeneratorConfig) -> ColdStartEmbeddings:
        if method == "deepmusic":
            return fit_deepmusic(dataset, content, users, items, generator, config.progress)
        return fit_aldi(
            dataset, content, users, items, generator, config.aldi_config, config.progress
        )

    return best_on_validation(method, dataset, [replace(g, seed=seed) for g in grid], fit)


def save_per_user(per_user: dict, path: Path) -> None:
    """Each task's evaluated users and their Recall@20 and NDCG@20 (for paired tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for task, (users, values) in per_user.items():
        arrays[f"{task}_users"] = users
        for metric in REPORTED_METRICS:
            arrays[f"{task}_{metric}"] = values[metric]
    np.savez_compressed(path, **arrays)


def paired_differences(
    records: Sequence[dict], folder: Path, reference: str = "llmins"
) -> list[dict]:
    """``reference`` minus every other method, paired over the same test users.

    Per seed, task and metric: the mean of the per-user differences and its standard
    error (std / sqrt(users)). A method run on several seeds also gets a ``"pooled"`` row:
    the seeds' per-user differences together (each seed is its own split, so a user can
    count once per seed). Empty when the reference has not run.
    """
    out = []
    differences: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for record in records:
        method, seed = record["method"], record["seed"]
        ours = folder / per_user_name(reference, seed)
        theirs = folder / per_user_name(method, seed)
        if method == reference or not ours.is_file() or not theirs.is_file():
            continue
        columns = per_user_differences(ours, theirs)
        differences.setdefault(method, {})[seed] = columns
        out.append(paired_row(method, seed, columns))
    for method, per_seed in differences.items():
        out += pooled_rows(method, per_seed)
    return out


def pooled_rows(method: str, per_seed: dict[int, dict[str, np.ndarray]]) -> list[dict]:
    """With several seeds, one :func:`paired_row` of their per-user differences together
    (each seed is its own split, so a user can count once per seed); else none."""
    if len(per_seed) < 2:
        return []
    seeds = list(per_seed.values())
    return [
        paired_row(method, "pooled", {c: np.concatenate([s[c] for s in seeds]) for c in seeds[0]})
    ]


def per_user_differences(
    ours: Path, theirs: Path, tasks: Sequence[str] = PAIRED_TASKS
) -> dict[str, np.ndarray]:
    """Per task and metric (``"cold recall@20"``), ``ours`` minus ``theirs`` user by user,
    from two :func:`save_per_user` files; refused unless both evaluated the same users."""
    a, b = np.load(ours), np.load(theirs)
    for task in tasks:
        if not np.array_equal(a[f"{task}_users"], b[f"{task}_users"]):
            raise ValueError(f"{ours} and {theirs} evaluated different {task} users")
    return {
        f"{task} {metric}": a[f"{task}_{metric}"] - b[f"{task}_{metric}"]
        for task in tasks
        for metric in REPORTED_METRICS
    }


def paired_row(method: str, seed: int | str, columns: dict[str, np.ndarray]) -> dict:
    """Each column's mean per-user difference and its standard error."""
    row: dict = {"method": method, "seed": seed}
    for column, difference in columns.items():
        row[column] = {
            "mean": float(difference.mean()),
            "se": float(difference.std(ddof=1) / np.sqrt(len(difference))),
            "users": int(len(difference)),
        }
    return row


def export_split(dataset: ColdStartDataset, folder: Path) -> None:
    """The split as ``user,item`` CSV files, ids matching the rows of the exported arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in SPLIT_NAMES:
        np.savetxt(
            folder / f"{part}.csv",
            dataset.splits[part],
            fmt="%d",
            delimiter=",",
            header="user,item",
            comments="",
        )


def export_embeddings(result: ColdStartEmbeddings, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "users.npy", result.users.astype(np.float32))
    np.save(folder / "items.npy", result.items.astype(np.float32))


def write_results(records: Sequence[dict], out: Path) -> None:
    """``results.json`` (every record) and ``report.md`` (mean ± std over seeds)."""
    temporary = out / "results.json.tmp"
    temporary.write_text(json.dumps(records, indent=2, default=_json_default))
    temporary.replace(out / "results.json")
    (out / "plots").mkdir(exist_ok=True)
    plot_metrics(records, out / "plots" / "recall.png")
    paired = paired_differences(records, out / PER_USER_DIR)
    (out / "paired.json").write_text(json.dumps(paired, indent=2))
    (out / "report.md").write_text(render_report(records, paired))


def render_report(records: Sequence[dict], paired: Sequence[dict] = ()) -> str:
    """A table like the paper's: one row per (data set, backbone, method), mean ± std."""
    header = ["dataset", "backbone", "method", "seeds"]
    for task in TASKS:
        header += [f"{task} {metric}" for metric in REPORTED_METRICS]
    header += ["fit+eval s", "fit s / cold item"]
    lines = [
        "# Benchmark report",
        "",
        "Recall@20 and NDCG@20, full ranking, test split; mean ± std over seeds. Recall divides"
        " hits by the number of ground-truth items. Fit seconds per cold item: the method's"
        " fit (shared pieces it built first included) over the validation and test cold items.",
        "",
        *_table_head(header),
    ]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["backbone"], record["method"]), []).append(
            record
        )
    for (dataset, backbone, method), group in groups.items():
        cells = [dataset, backbone, method, str(len(group))]
        for task in TASKS:
            for metric in REPORTED_METRICS:
                cells.append(_mean_std([r[task][metric] for r in group]))
        cells.append(
            _mean_std(
                [
                    sum(s for name, s in r["seconds"].items() if name.endswith(f":{method}"))
                    for r in group
                ],
                digits=1,
            )
        )
        cells.append(
            _mean_std(
                [
                    r["seconds"][f"fit:{method}"]
                    / (r["data"]["cold_val_items"] + r["data"]["cold_test_items"])
                    for r in group
                ],
                digits=4,
            )
        )
        lines.append("| " + " | ".join(cells) + " |")
    stage_lines = ["", "## Wall time of every stage (seconds, first seed)", ""]
    for (_, _, method), group in groups.items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in group[0]["seconds"].items())
        inner = group[0]["method_info"].get("seconds")
        if isinstance(inner, dict):
            stages += " (" + ", ".join(f"{k} {v:.1f}" for k, v in inner.items()) + ")"
        stage_lines.append(f"- {method}: {stages}")
    figures = ["", "## Figures", "", "![test Recall@20 per method](plots/recall.png)", ""]
    figures += [f"![{method}](plots/projection-{method}.png)" for (_, _, method) in groups]
    return (
        "\n".join(lines + paired_lines(paired) + simulation_lines(groups) + stage_lines + figures)
        + "\n"
    )


def paired_lines(paired: Sequence[dict]) -> list[str]:
    """``llmins`` minus each method, paired over test users, ± one standard error."""
    if not paired:
        return []
    columns = [f"{task} {metric}" for task in PAIRED_TASKS for metric in REPORTED_METRICS]
    lines = [
        "",
        "## llmins minus each method, paired over the same test users (± standard error)",
        "",
        *_table_head(["method", "seed", *columns]),
    ]
    for row in paired:
        cells = [row["method"], str(row["seed"])]
        cells += [f"{row[c]['mean']:+.4f} ± {row[c]['se']:.4f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


#: Per-variant measurements of LLM-InS shown in the report (keys of ``method_info``).
SIMULATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("candidate precision", "test_candidate_precision"),
    (f"candidate precision@{PRECISION_DEPTH}", f"test_candidate_precision@{PRECISION_DEPTH}"),
    ("kept precision", "test_precision"),
    ("adoption", "test_adoption"),
    ("pairs/item", "test_pairs_per_item"),
    ("refiner AUC", "test_refiner_auc"),
    ("filter AUC", "test_filter_auc"),
    ("simulator AUC", "test_simulator_auc"),
)


def simulation_lines(groups: dict[tuple[str, str, str], list[dict]]) -> list[str]:
    """Candidate precision, refining and the LM's measured contribution, per variant."""
    header = ["method", *(name for name, _ in SIMULATION_COLUMNS), "LM used"]
    lines = [
        "",
        "## Simulated interactions (cold test items; mean over seeds)",
        "",
        "Precision: share of users that are real held-out users of the item. AUC: per item,"
        " among its candidates.",
        "",
        *_table_head(header),
    ]
    lm_lines = []
    for (_, _, method), group in groups.items():
        infos = [r["method_info"] for r in group]
        if "test_candidate_precision" not in infos[0]:
            continue
        cells = [method]
        for _, key in SIMULATION_COLUMNS:
            values = [info[key] for info in infos if key in info]
            cells.append(_mean_std(values) if values else "-")
        cells.append(str(infos[0].get("lm_used", infos[0]["config"]["lm"] == "paper")))
        lines.append("| " + " | ".join(cells) + " |")
        measured = infos[0].get("lm_measurement")
        if measured:
            lm_lines += _lm_lines(method, measured)
    if lm_lines:
        lines += [
            "",
            "## What the LM adds (first seed; sampled cold items, the refiner's best candidates)",
            "",
            "Per-item AUC and precision of the refiner without the LM's score, with it (weights"
            " fitted on validation, out of fold there) and of the LM alone; gains paired over"
            " items, ± one standard error.",
            "",
            "| method | stage | items × candidates | AUC without / with / LM alone | AUC gain |"
            " precision without / with / LM alone | precision gain |",
            "|---|---|---|---|---|---|---|",
            *lm_lines,
        ]
    return lines


def _lm_lines(method: str, measured: dict) -> list[str]:
    lines = []
    for stage, m in measured.items():
        precision_key = next(k for k in m if k.startswith("precision@"))
        auc, precision = m["auc"], m[precision_key]
        order = ("without_lm", "with_lm", "lm_alone")
        lines.append(
            f"| {method} | {stage} | {m['items']} × {m['candidates_per_item']} | "
            + " / ".join(f"{auc[k]:.3f}" for k in order)
            + f" | {m['auc_gain']['mean']:+.4f} ± {m['auc_gain']['se']:.4f} | "
            + " / ".join(f"{precision[k]:.3f}" for k in order)
            + f" ({precision_key}) | {m['precision_gain']['mean']:+.4f} ± "
            + f"{m['precision_gain']['se']:.4f} |"
        )
    return lines


def _table_head(header: Sequence[str]) -> list[str]:
    """A markdown table's header row and separator."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def _mean_std(values: Sequence[float], digits: int = 4) -> str:
    array = np.asarray(values, dtype=np.float64)
    if len(array) == 1:
        return f"{array[0]:.{digits}f}"
    return f"{array.mean():.{digits}f} ± {array.std(ddof=1):.{digits}f}"


def _one_line(record: dict) -> str:
    return ", ".join(
        f"{task} R {record[task]['recall@20']:.4f} N {record[task]['ndcg@20']:.4f}"
        for task in TASKS
    )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")
