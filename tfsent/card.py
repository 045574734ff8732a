"""The model card: ``README.md`` in the Hugging Face format, written into every run folder.

Built with ``huggingface_hub``'s ``ModelCard`` / ``ModelCardData``: YAML metadata (base model,
dataset, license, tags, ``model-index`` with the evaluation results) and a body with the intended
use and limitations, the training options, the evaluation table (accuracy, precision / recall /
F1, calibration error when the run was calibrated), the confusion matrix, and how to load the
model and serve its export with TF Serving. It sits next to ``model/`` and ``tokenizer/``, so the
run folder is a valid Hub model repository (``python -m tfsent.push``)::

    >>> from tfsent.config import DataConfig
    >>> dataset_metadata(DataConfig(dataset="aclImdb_v1.tar.gz"))
    {'hub_id': 'stanfordnlp/imdb', 'type': 'stanfordnlp/imdb', 'name': 'IMDB (aclImdb)'}
    >>> dataset_metadata(DataConfig(dataset="demo"))["hub_id"] is None
    True
    >>> base_model_id("tiny") is None, base_model_id("bert-base-uncased")
    (True, 'bert-base-uncased')
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail, first_line
from tfsent.model import TINY, TINY_PREFIX, tiny_family

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from tfsent.config import DataConfig, RunConfig
    from tfsent.rundir import RunDir

CARD_NAME = "README.md"
# The body's layout, a Jinja template shipped as package data (setup.cfg).
CARD_TEMPLATE = "templates/model_card.md"
TAGS = ["tensorflow", "tf-keras", "text-classification", "sentiment-analysis", "tfsent"]
TABLE_FILES = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
# (metrics.json key, model-index metric type, display name, extra EvalResult fields)
EVAL_METRICS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("accuracy", "accuracy", "Accuracy", {}),
    ("precision_macro", "precision", "Precision (macro)", {"metric_args": {"average": "macro"}}),
    ("recall_macro", "recall", "Recall (macro)", {"metric_args": {"average": "macro"}}),
    ("f1_macro", "f1", "F1 (macro)", {"metric_args": {"average": "macro"}}),
    ("precision_weighted", "precision", "Precision (weighted)",
     {"metric_args": {"average": "weighted"}}),
    ("recall_weighted", "recall", "Recall (weighted)", {"metric_args": {"average": "weighted"}}),
    ("f1_weighted", "f1", "F1 (weighted)", {"metric_args": {"average": "weighted"}}),
)


def dataset_metadata(data: DataConfig) -> dict[str, Any]:
    """The training data as the card names it: a Hub dataset id when there is one."""
    source = data.dataset
    path = Path(source)
    if source == "demo":
        return {"hub_id": None, "type": "tfsent-demo", "name": "tfsent demo (generated reviews)"}
    if "aclimdb" in path.name.lower():  # the official IMDB tarball or folder
        return {"hub_id": "stanfordnlp/imdb", "type": "stanfordnlp/imdb", "name": "IMDB (aclImdb)"}
    if path.suffix.lower() in TABLE_FILES or path.exists():
        return {"hub_id": None, "type": TABLE_FILES.get(path.suffix.lower(), "local"),
                "name": path.name}
    return {"hub_id": source, "type": source, "name": source}


def base_model_id(model: str) -> str | None:
    """``model`` when it is a Hub model id; None for ``tiny`` and local folders (no Hub id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if model == TINY or model.startswith(TINY_PREFIX) or Path(model).exists():
        return None
    try:
        validate_repo_id(model)
    except HFValidationError:
        return None
    return model


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _eval_results(metrics: dict[str, Any], data: dict[str, Any], model_name: str) -> list:
    from huggingface_hub import EvalResult

    results = []
    for split in ("validation", "test"):
        if split not in metrics:
            continue
        for key, metric_type, name, extra in EVAL_METRICS:
            results.append(EvalResult(
                task_type="text-classification", task_name="Text Classification",
                dataset_type=data["type"], dataset_name=data["name"], dataset_split=split,
                metric_type=metric_type, metric_name=name, metric_value=metrics[split][key],
                **extra))
    calibration = metrics.get("calibration")
    if calibration and "validation" in metrics:
        for key, name in (("ece_before", "ECE (before temperature scaling)"),
                          ("ece_after", "ECE (after temperature scaling)")):
            if calibration.get(key) is not None:
                results.append(EvalResult(
                    task_type="text-classification", task_name="Text Classification",
                    dataset_type=data["type"], dataset_name=data["name"],
                    dataset_split="validation", metric_type="ece", metric_name=name,
                    metric_value=calibration[key]))
    return results


def build_model_card(run: RunDir, repo_id: str | None = None,
                     saved_model_version: int | None = None) -> ModelCard:
    """The card of a finished run; ``repo_id`` names it in the usage examples, and
    ``saved_model_version`` says the repo holds ``saved_model/<version>/``."""
    from huggingface_hub import ModelCard, ModelCardData

    cfg = run.config
    metrics = run.metrics
    if "validation" not in metrics:
        fail(f"run directory {run.path} has no metrics.json; the card needs a finished run "
             "(python -m tfsent.fit)")
    data = dataset_metadata(cfg.data)
    base = base_model_id(cfg.model.model)
    model_name = repo_id.split("/")[-1] if repo_id else cfg.train.model_name
    card_data = ModelCardData(
        language="en" if cfg.data.dataset == "demo" or data["hub_id"] == "stanfordnlp/imdb"
        else None,
        license=cfg.model.license or "apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=[*TAGS[:2], _architecture(run)[0], *TAGS[2:]],
        base_model=base,
        datasets=[data["hub_id"]] if data["hub_id"] else None,
        metrics=["accuracy", "precision", "recall", "f1"],
        model_name=model_name,
        eval_results=_eval_results(metrics, data, model_name),
    )
    template = resources.files("tfsent").joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")
    return ModelCard.from_template(card_data, template_str=template, **_template_values(
        run, cfg, metrics, data, base, model_name, repo_id, saved_model_version))


def write_model_card(run: RunDir, repo_id: str | None = None,
                     saved_model_version: int | None = None,
                     card: ModelCard | None = None) -> Path:
    """Write the run's ``README.md`` (``card``, or one built from the run), atomically: a reader
    never sees half a card."""
    from tfsent.files import write_text_atomic

    card = card or build_model_card(run, repo_id, saved_model_version)
    path = run.path / CARD_NAME
    write_text_atomic(path, str(card))
    return path


def check_model_card(path: str | Path) -> ModelCard:
    """Parse a card as the Hub reads it, offline; a one-line ``UserError`` if it is invalid.

    ``ModelCard.load`` with ``ignore_metadata_errors=False`` parses the YAML and turns
    ``model-index`` back into ``EvalResult`` objects (``model_index_to_eval_results``), raising
    on anything malformed. (``ModelCard.validate`` asks the Hub, which is not always reachable.)
    """
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(Path(path), ignore_metadata_errors=False)
        data = card.data.to_dict()
    except Exception as err:  # yaml / ValueError / KeyError from huggingface_hub's parsing
        fail(f"model card {path} is not valid Hub metadata ({first_line(err)}); rewrite it with "
             "python -m tfsent.push --run-dir <run> --dry-run")
    missing = [k for k in ("license", "library_name", "pipeline_tag", "model-index")
               if not data.get(k)]
    if missing:
        fail(f"model card {path} lacks {', '.join(missing)} in its metadata; rewrite it with "
             "python -m tfsent.push --run-dir <run> --dry-run")
    return card


def _architecture(run: RunDir) -> tuple[str, str]:
    """``(model_type, TF class name)`` of the run's model, from ``model/config.json``."""
    try:
        config = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))
        return config["model_type"], f"TF{config['architectures'][0]}"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "bert", "TFBertForSequenceClassification"  # what runs made before families


def _template_values(run: RunDir, cfg: RunConfig, metrics: dict[str, Any],
                     data: dict[str, Any], base: str | None, model_name: str,
                     repo_id: str | None, saved_model_version: int | None) -> dict[str, Any]:
    """What ``templates/model_card.md`` fills in: the run's facts, unformatted (the template
    lays them out; ``fmt`` is how it writes a score)."""
    from tfsent.export import SERVING_IMAGE

    splits = [s for s in ("validation", "test") if s in metrics]
    images = [(f"Confusion matrix ({split})", run.confusion_matrix_png(split))
              for split in splits]
    images += [(f"Reliability diagram ({split})", run.path / (
        f"reliability_diagram{'' if split == 'validation' else '_' + split}.png"))
        for split in splits]
    images.append(("Training curves", run.training_curves_png))
    calibration = metrics.get("calibration")
    return {
        "model_name": model_name,
        "architecture": _architecture(run)[1],
        "labels": metrics["validation"]["label_names"],
        "base_model_id": base,
        "tiny_family": tiny_family(cfg.model.model),
        "local_model": Path(cfg.model.model).name,
        "data_name": data["name"],
        "data_kind": _data_kind(cfg),
        "max_length": cfg.model.max_length,
        "truncation": cfg.model.truncation,
        "train_seconds": metrics.get("train_seconds", 0),
        "examples_per_second": metrics.get("train_examples_per_second", 0),
        "precision_policy": metrics.get("precision_policy", "float32"),
        "monitor": cfg.train.monitor,
        "options": [(f"{section}.{name}", _option_text(value))
                    for section, values in cfg.to_dict().items()
                    for name, value in values.items()],
        "splits": splits,
        "scores": metrics,
        "table_metrics": [("examples", "Examples"),
                          *[(key, name) for key, _, name, _ in EVAL_METRICS],
                          ("loss", "Loss (cross-entropy)")],
        "calibration": calibration,
        "images": [(alt, path.name) for alt, path in images if path.is_file()],
        "temperature": float((calibration or {}).get("temperature", 1.0)),
        "where": repo_id or "path/to/this/folder",
        "name": cfg.train.model_name,
        "serving_image": SERVING_IMAGE,
        "saved_model_version": saved_model_version,
        "fmt": _fmt,
    }


def _option_text(value: Any) -> str:
    """An option's value in a Markdown table cell.

    >>> _option_text([1, 2]), _option_text(None), _option_text("a|b")
    ('[1, 2]', '-', 'a/b')
    """
    shown = (json.dumps(value) if isinstance(value, (list, dict))
             else "-" if value is None else str(value))
    return shown.replace("|", "/")


def _data_kind(cfg: RunConfig) -> str:
    if cfg.data.dataset == "demo":
        return "short generated movie reviews"
    if "imdb" in cfg.data.dataset.lower():
        return "movie reviews"
    return f"the texts of column `{cfg.data.text_column}`"
