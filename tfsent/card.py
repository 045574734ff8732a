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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail
from tfsent.model import TINY, TINY_PREFIX, tiny_family

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from tfsent.config import DataConfig, RunConfig
    from tfsent.rundir import RunDir

CARD_NAME = "README.md"
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
        license=getattr(cfg.model, "license", None) or "apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=[*TAGS[:2], _architecture(run)[0], *TAGS[2:]],
        base_model=base,
        datasets=[data["hub_id"]] if data["hub_id"] else None,
        metrics=["accuracy", "precision", "recall", "f1"],
        model_name=model_name,
        eval_results=_eval_results(metrics, data, model_name),
    )
    body = _body(run, cfg, metrics, data, base, model_name, repo_id, saved_model_version)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def write_model_card(run: RunDir, repo_id: str | None = None,
                     saved_model_version: int | None = None,
                     card: ModelCard | None = None) -> Path:
    """Write the run's ``README.md`` (``card``, or one built from the run), atomically: a reader
    never sees half a card."""
    from tfsent.rundir import write_text_atomic

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
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        fail(f"model card {path} is not valid Hub metadata ({reason}); rewrite it with "
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


def _body(run: RunDir, cfg: RunConfig, metrics: dict[str, Any], data: dict[str, Any],
          base: str | None, model_name: str, repo_id: str | None,
          saved_model_version: int | None) -> str:
    from tfsent.export import SERVING_IMAGE

    validation = metrics["validation"]
    labels = validation["label_names"]
    splits = [s for s in ("validation", "test") if s in metrics]
    if base:
        base_text = f"[`{base}`](https://huggingface.co/{base})"
    elif tiny_family(cfg.model.model):
        base_text = (f"a small {tiny_family(cfg.model.model)} model built from a config, with "
                     "no pretrained weights (tfsent's offline demo model)")
    else:
        base_text = f"the local model folder `{Path(cfg.model.model).name}`"
    where = repo_id or "path/to/this/folder"
    lines = [
        f"# {model_name}",
        "",
        f"A `{_architecture(run)[1]}` fine-tuned with "
        f"tfsent (Keras `fit`) to classify the sentiment of a text as "
        f"{', '.join(f'`{x}`' for x in labels)}. Base model: {base_text}. Training data: "
        f"{data['name']}.",
        "",
        "## Intended use and limitations",
        "",
        f"- Intended use: sentiment classification of English text like the training data "
        f"({data['name']}: {_data_kind(cfg)}), e.g. to sort or count reviews.",
        f"- Texts longer than {cfg.model.max_length} tokens are cut "
        f"(`{cfg.model.truncation}` truncation): sentiment stated only in the cut part is "
        "missed.",
        "- Texts from other domains, languages, sarcasm and mixed opinions score worse than the "
        "evaluation below suggests; check it on your own labelled data first "
        "(`python -m tfsent.evaluate --run-dir . --data yours.csv`).",
        "- The model inherits the biases of its base model and of its training data. Do not use "
        "it alone for decisions about people.",
        "- The evaluation below is on held-out data of the same source: it measures fit to that "
        "source, not to the world.",
        "",
        "## Training",
        "",
        f"Trained in {metrics.get('train_seconds', 0):.0f} s "
        f"({metrics.get('train_examples_per_second', 0):.1f} examples/s, precision policy "
        f"`{metrics.get('precision_policy', 'float32')}`). The best epoch by `{cfg.train.monitor}` "
        "on the validation split was kept. Every option of the run (`config.json` reproduces it "
        "with `python -m tfsent.fit --config config.json`):",
        "",
        "| option | value |",
        "|---|---|",
    ]
    for section, values in cfg.to_dict().items():
        for name, value in values.items():
            shown = (json.dumps(value) if isinstance(value, (list, dict))
                     else "-" if value is None else str(value))
            lines.append(f"| `{section}.{name}` | {shown.replace('|', '/')} |")
    lines += ["", "## Evaluation", "",
              "| metric | " + " | ".join(splits) + " |",
              "|---|" + "---|" * len(splits)]
    for key, _, name, _ in (("examples", "", "Examples", {}), *EVAL_METRICS,
                            ("loss", "", "Loss (cross-entropy)", {})):
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics[s].get(key)) for s in splits) + " |")
    calibration = metrics.get("calibration")
    if calibration:
        lines += [
            "",
            f"Calibration on the validation split (temperature scaling, T = "
            f"{_fmt(calibration.get('temperature'))}): expected calibration error (ECE) "
            f"{_fmt(calibration.get('ece_before'))} before, {_fmt(calibration.get('ece_after'))} "
            "after.",
        ]
    lines += ["", "Accuracy per class:", "",
              "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(
            _fmt(metrics[s]["per_class_accuracy"].get(label)) for s in splits) + " |")
    for split in splits:
        image = run.confusion_matrix_png(split)
        if image.is_file():
            lines += ["", f"![Confusion matrix ({split})]({image.name})"]
    for split in splits:
        image = run.path / f"reliability_diagram{'' if split == 'validation' else '_' + split}.png"
        if image.is_file():
            lines += ["", f"![Reliability diagram ({split})]({image.name})"]
    image = run.training_curves_png
    if image.is_file():
        lines += ["", f"![Training curves]({image.name})"]
    name = cfg.train.model_name
    image_name = SERVING_IMAGE
    temperature = float((calibration or {}).get("temperature", 1.0))
    lines += [
        "",
        "## How to use",
        "",
        "With transformers (TensorFlow); the weights are in `model/`, the tokenizer in "
        "`tokenizer/`:",
        "",
        "```python",
        "import tensorflow as tf",
        "from transformers import AutoTokenizer, TFAutoModelForSequenceClassification",
        "",
        f"temperature = {temperature!r}",
        f'repo = "{where}"',
        'tokenizer = AutoTokenizer.from_pretrained(repo, subfolder="tokenizer")',
        'model = TFAutoModelForSequenceClassification.from_pretrained(repo, subfolder="model")',
        f'batch = tokenizer(["A wonderful, moving film."], truncation=True, '
        f"max_length={cfg.model.max_length}, return_tensors=\"tf\")",
        "probabilities = tf.nn.softmax(model(**batch).logits / temperature).numpy()",
        "```",
        "",
        f"`temperature` is {_fmt(temperature)}: the calibration temperature in `metrics.json` "
        "(1 when the run was not calibrated); the export divides the logits by it too.",
        "",
        "(tfsent cuts long texts `head+tail` in its own pipeline; the exported SavedModel below "
        "does exactly what training did.)",
        "",
        "## Serve with TF Serving",
        "",
    ]
    if saved_model_version is not None:
        lines += [
            f"This repository holds the exported SavedModel in `saved_model/"
            f"{saved_model_version}/` (TF Serving's version layout; tokenization is inside the "
            "graph, so it scores raw text):",
            "",
            "```bash",
            f"huggingface-cli download {where} --include 'saved_model/*' --local-dir {name}-repo",
            f'docker run -p 8500:8500 -p 8501:8501 -v "$PWD/{name}-repo/saved_model:'
            f'/models/{name}" -e MODEL_NAME={name} {image_name}',
            "```",
        ]
    else:
        lines += [
            "Export a versioned SavedModel (tokenization inside the graph, so it scores raw "
            "text) from this folder with tfsent, then serve it:",
            "",
            "```bash",
            f"python -m tfsent.export --run-dir . --export-dir exported --model-name {name}",
            f'docker run -p 8500:8500 -p 8501:8501 -v "$PWD/exported/{name}:/models/{name}" '
            f"-e MODEL_NAME={name} {image_name}",
            "```",
        ]
    lines += [
        "",
        "Then score texts over REST (or gRPC on port 8500, e.g. with `python -m tfsent.predict "
        "--server grpc://localhost:8500`):",
        "",
        "```bash",
        f"curl -X POST http://localhost:8501/v1/models/{name}:predict \\",
        "  -d '{\"instances\": [{\"text\": \"A great film, I loved it.\"}]}'",
        "```",
        "",
        "The signature `serving_default` returns `probabilities`, `label_id`, `label`, `logits` "
        "and `classes`.",
        "",
    ]
    return "\n".join(lines)


def _data_kind(cfg: RunConfig) -> str:
    if cfg.data.dataset == "demo":
        return "short generated movie reviews"
    if "imdb" in cfg.data.dataset.lower():
        return "movie reviews"
    return f"the texts of column `{cfg.data.text_column}`"
