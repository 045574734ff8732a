"""Calibration: temperature scaling, expected calibration error, reliability diagrams.

A fine-tuned BERT's raw softmax is typically over-confident. After training, :func:`calibrate`
fits one temperature ``T`` on the validation split (Guo et al. 2017, *On Calibration of Modern
Neural Networks*: the single scalar minimizing the NLL of ``logits / T``); the export divides the
serving graph's logits by it. Dividing by a positive scalar keeps every argmax, so accuracy is
unchanged; only the confidences move::

    >>> import numpy as np
    >>> labels = np.array([0, 1, 1, 0])
    >>> logits = np.array([[4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [3.0, -3.0]])  # one wrong
    >>> t = fit_temperature(labels, logits)
    >>> round(t, 3)
    7.494
    >>> bool((softmax(logits, t).argmax(-1) == logits.argmax(-1)).all())
    True
    >>> nll(labels, logits, t) < nll(labels, logits)
    True

The expected calibration error sorts the predictions into 15 equal-width confidence bins and
averages ``|accuracy - confidence|`` over the bins, weighted by their share of the examples::

    >>> probabilities = np.array([[0.95, 0.05], [0.25, 0.75], [0.35, 0.65], [0.7, 0.3]])
    >>> round(expected_calibration_error(np.array([0, 1, 1, 1]), probabilities), 4)
    0.3375

(Four bins of one example each: ``(0.05 + 0.25 + 0.35 + 0.7) / 4``.)

The temperature is searched over ``log T`` within :data:`TEMPERATURE_BOUNDS`, ``[0.05, 20]``.
When every validation example is predicted right, the NLL has no minimum: it keeps falling as
``T -> 0``, and the search would end on the bound 0.05, sharpening every later prediction twenty
times (on the demo, whose validation split is all right, that raises the test NLL from 0.16 to
2.9). Such a split says nothing about how confident the model should be, so ``T`` stays 1.0, with
a warning. ``T`` also stays 1.0 without examples, with non-finite logits, or when no temperature
lowers the NLL (constant logits). A model worse than chance gets ``T`` = 20 (near uniform).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsent.errors import fail
from tfsent.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BINS = 15
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
METHODS: tuple[str, ...] = ("temperature", "none")


def _as_arrays(labels: Sequence[int] | np.ndarray,
               scores: Sequence[Sequence[float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"expected [n, classes] scores for {len(labels)} labels, "
                         f"got shape {scores.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be ids below {scores.shape[1]}")
    return labels, scores


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of ``logits / temperature`` (float64, rows sum to 1)."""
    from scipy.special import softmax as scipy_softmax

    return scipy_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def nll(labels: Sequence[int] | np.ndarray, logits: np.ndarray,
        temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    from scipy.special import log_softmax

    labels, logits = _as_arrays(labels, logits)
    if not len(labels):
        return math.nan
    log_probs = log_softmax(logits / temperature, axis=-1)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def reliability_bins(labels: Sequence[int] | np.ndarray, probabilities: np.ndarray,
                     bins: int = BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin ``(k/bins, (k+1)/bins]``: the number of predictions, their
    accuracy and their mean confidence (NaN for empty bins); the confidence is the top class's
    probability. ``edges`` holds the ``bins + 1`` bin edges.

    >>> b = reliability_bins([0, 1, 0], np.array([[0.9, 0.1], [0.7, 0.3], [0.35, 0.65]]), bins=5)
    >>> b["count"].tolist(), b["accuracy"].round(3).tolist(), b["confidence"][3:].tolist()
    ([0, 0, 0, 2, 1], [nan, nan, nan, 0.0, 1.0], [0.675, 0.9])
    """
    labels, probabilities = _as_arrays(labels, probabilities)
    edges = np.linspace(0.0, 1.0, bins + 1)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    # right=True: bin k holds edges[k] < confidence <= edges[k + 1], as in Guo et al.
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
    return {"edges": edges, "count": count, "accuracy": accuracy, "confidence": mean_confidence}


def expected_calibration_error(labels: Sequence[int] | np.ndarray, probabilities: np.ndarray,
                               bins: int = BINS) -> float:
    """ECE: ``sum_k (n_k / n) * |accuracy_k - confidence_k|`` over ``bins`` equal-width
    confidence bins (Guo et al. 2017). 0 is perfectly calibrated; NaN without examples."""
    b = reliability_bins(labels, probabilities, bins)
    total = b["count"].sum()
    if not total:
        return math.nan
    filled = b["count"] > 0
    gaps = np.abs(b["accuracy"][filled] - b["confidence"][filled])
    return float((b["count"][filled] * gaps).sum() / total)


def fit_temperature(labels: Sequence[int] | np.ndarray, logits: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` in ``bounds`` minimizing ``nll(labels, logits, T)``.

    The NLL is convex in ``1/T``, so it has one minimum along ``log T``, which a bounded Brent
    search finds; searching ``log T`` gives ``T`` the same relative precision at 0.05 and at 20.
    1.0 when there is nothing to fit (see the module docstring), with a warning when every
    prediction is right.
    """
    from scipy.optimize import minimize_scalar

    labels, logits = _as_arrays(labels, logits)
    if not len(labels) or not np.isfinite(logits).all():
        return 1.0
    if (logits.argmax(axis=-1) == labels).all():
        warnings.warn(f"all {len(labels)} validation examples are predicted right, so the NLL "
                      "has no minimum over the temperature (it falls as T -> 0); temperature "
                      "left at 1.0", stacklevel=2)
        return 1.0
    low, high = bounds
    if not 0 < low <= 1 <= high:
        raise ValueError(f"temperature bounds {bounds} must hold 1 and be positive")
    found = minimize_scalar(lambda u: nll(labels, logits, math.exp(u)),
                            bounds=(math.log(low), math.log(high)), method="bounded",
                            options={"xatol": 1e-6})
    best = float(math.exp(found.x))
    # Brent never evaluates the bounds themselves: when the minimum lies at or beyond one,
    # snap to it.
    best = min((low, best, high), key=lambda t: nll(labels, logits, t))
    if not nll(labels, logits, best) < nll(labels, logits, 1.0):
        return 1.0  # a flat NLL (constant logits): nothing to gain
    return best


def calibration_metrics(labels: Sequence[int] | np.ndarray, logits: np.ndarray,
                        temperature: float, method: str | None = None,
                        bins: int = BINS) -> dict[str, Any]:
    """ECE and NLL before (``T = 1``) and after dividing ``logits`` by ``temperature``.

    >>> m = calibration_metrics([0, 1], np.array([[2.0, 0.0], [0.0, 2.0]]), 1.0, "none")
    >>> sorted(m), m["ece_before"] == m["ece_after"]
    (['bins', 'ece_after', 'ece_before', 'method', 'nll_after', 'nll_before', 'temperature'], True)
    """
    labels, logits = _as_arrays(labels, logits)
    metrics: dict[str, Any] = {} if method is None else {"method": method}
    return metrics | {
        "temperature": float(temperature),
        "ece_before": expected_calibration_error(labels, softmax(logits), bins),
        "ece_after": expected_calibration_error(labels, softmax(logits, temperature), bins),
        "nll_before": nll(labels, logits),
        "nll_after": nll(labels, logits, temperature),
        "bins": bins,
    }


def calibrate(labels: Sequence[int] | np.ndarray, logits: np.ndarray,
              method: str = "temperature", bins: int = BINS) -> dict[str, Any]:
    """``metrics.json``'s ``calibration`` entry: the temperature fitted on these (validation)
    predictions (1.0 with ``method="none"``), and the ECE and NLL before and after it."""
    if method not in METHODS:
        fail(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    temperature = fit_temperature(labels, logits) if method == "temperature" else 1.0
    return calibration_metrics(labels, logits, temperature, method, bins)


def reliability_diagram_path(run_dir: str | Path, split: str = "validation") -> Path:
    """``reliability_diagram.png`` (``reliability_diagram_<split>.png`` for other splits), next
    to the split's confusion matrix."""
    return RunDir(run_dir).reliability_diagram_png(split)


def calibrate_run(run_dir: str | Path, labels: np.ndarray, logits: np.ndarray,
                  method: str = "temperature") -> dict[str, Any]:
    """:func:`calibrate` on a run's validation predictions, with its reliability diagram
    written into ``run_dir``; returns the entry for ``metrics["calibration"]``."""
    calibration = calibrate(labels, logits, method)
    plot_reliability_diagram(labels, logits, calibration["temperature"],
                             reliability_diagram_path(run_dir), "validation")
    return calibration


def plot_reliability_diagram(labels: Sequence[int] | np.ndarray, logits: np.ndarray,
                             temperature: float, path: str | Path | None = None,
                             split: str = "validation", bins: int = BINS) -> Figure:
    """Accuracy per confidence bin against the diagonal, before and after the temperature
    (one panel when ``temperature`` is 1), with the predictions per bin underneath; saved to
    ``path`` when given. Returns the Figure."""
    # A bare Figure draws without pyplot, so a notebook's inline backend is left alone.
    from matplotlib.figure import Figure

    labels, logits = _as_arrays(labels, logits)
    panels = [("uncalibrated (T = 1)", 1.0)]
    if temperature != 1.0:
        panels.append((f"temperature scaled (T = {temperature:.3g})", temperature))
    fig = Figure(figsize=(5 * len(panels), 5.6))
    axes = fig.subplots(2, len(panels), squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / bins
    for column, (name, t) in enumerate(panels):
        probabilities = softmax(logits, t)
        b = reliability_bins(labels, probabilities, bins)
        ece = expected_calibration_error(labels, probabilities, bins)
        centers = b["edges"][:-1] + width / 2
        filled = b["count"] > 0
        top, bottom = axes[0, column], axes[1, column]
        top.bar(centers[filled], b["accuracy"][filled], width=width, color="tab:blue",
                edgecolor="black", linewidth=0.6, label="accuracy")
        # The gap between the accuracy and the mean confidence of each bin, as in Guo et al.
        gap = b["confidence"][filled] - b["accuracy"][filled]
        top.bar(centers[filled], gap, bottom=b["accuracy"][filled], width=width,
                color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.6,
                label="gap to mean confidence")
        top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{name}\nECE {100 * ece:.2f}% ({bins} bins)", fontsize=10)
        top.legend(loc="upper left", fontsize=8)
        top.grid(alpha=0.3)
        bottom.bar(centers, b["count"], width=width, color="gray", edgecolor="black",
                   linewidth=0.6)
        bottom.set_xlabel("confidence (top-class probability)")
        bottom.set_ylabel("predictions")
        bottom.grid(alpha=0.3)
    fig.suptitle(f"Reliability diagram ({split}, {len(labels):,} examples)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
