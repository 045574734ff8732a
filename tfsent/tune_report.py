"""The search's outputs, from every trial of its study: ``trials.csv``, ``best_config.yaml``
and the plots (Optuna's matplotlib visualizations).

Written again at the end of every search run, by whichever worker finishes, so they always
describe the whole study.

    >>> format_params({"learning_rate": 3.2e-05, "batch_size": 32})
    'learning_rate 3.2e-05, batch_size 32'
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.files import write_text_atomic
from tfsent.tune_space import SEARCHED, best_config

if TYPE_CHECKING:
    import optuna

    from tfsent.config import RunConfig

FINISHED_STATES = ("COMPLETE", "PRUNED")


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count toward ``--n-trials``: completed or pruned."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED_STATES]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())


def write_outputs(study: optuna.Study, cfg: RunConfig, out: Path) -> dict[str, Any]:
    """trials.csv, best_config.yaml and the plots, from every trial of the study."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    monitor = cfg.train.monitor
    summary: dict[str, Any] = {"trials_csv": str(write_trials_table(study, monitor,
                                                                     out / "trials.csv"))}
    best = best_trial(study)
    if best is None:
        print("no trial completed: no best config", flush=True)
        return summary
    best_cfg = best_config(cfg, best.params, out / "best")
    path = out / "best_config.yaml"
    header = (f"# Best trial #{best.number} of study {study.study_name!r}: {monitor} "
              f"{best.value:.6g} (validation split; trials never scored the test split).\n"
              f"# Refit it, scoring the test split too: python -m tfsent.fit --config {path}\n")
    write_text_atomic(path, header + yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
    summary |= {"best_trial": best.number, "best_value": best.value, "best_params": best.params,
                "best_run_dir": best.user_attrs.get("run_dir"), "best_config": str(path),
                "plots": [str(p) for p in save_plots(study, monitor, out)]}
    print(f"best: trial #{best.number}, {monitor} {best.value:.4f}: "
          f"{format_params(best.params)}", flush=True)
    print(f"wrote {path}, {out / 'trials.csv'} and {len(summary['plots'])} plot(s); "
          f"refit with: python -m tfsent.fit --config {path}", flush=True)
    return summary


def write_trials_table(study: optuna.Study, monitor: str, path: Path) -> Path:
    """One row per trial: state, value, options, epochs run, time, retried trial, folder."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name,
                               monitor: "" if trial.value is None else trial.value}
        row |= {name: trial.params.get(name, "") for name in SEARCHED}
        row |= {
            "epochs_run": len(trial.intermediate_values),
            "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else "",
            "retry_of": trial.system_attrs.get("failed_trial", ""),
            "run_dir": trial.user_attrs.get("run_dir", ""),
        }
        rows.append(row)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["trial"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue(), newline="")  # the csv module ends rows itself
    return path


def save_plots(study: optuna.Study, monitor: str, out: Path) -> list[Path]:
    """Optimization history and parameter importances (optuna.visualization.matplotlib).

    Optuna draws through pyplot and switches its style to ggplot: ``rc_context`` restores the
    rcParams and every figure is closed, so a notebook's pyplot state is left as it was.
    """
    import matplotlib
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization.matplotlib import (
        plot_optimization_history,
        plot_param_importances,
    )

    completed = [x for x in study.get_trials(deepcopy=False) if x.state.name == "COMPLETE"]
    varied = any(len({repr(x.params.get(name)) for x in completed}) > 1 for name in SEARCHED)
    plots = [("optimization_history.png", lambda: plot_optimization_history(
        study, target_name=monitor))]
    if len(completed) >= 2 and varied:
        plots.append(("param_importances.png", lambda: plot_param_importances(
            study, target_name=monitor)))
    written = []
    for name, draw in plots:
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            before = set(plt.get_fignums())
            try:
                ax = draw()
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.savefig(out / name, dpi=120, bbox_inches="tight")
                written.append(out / name)
            except (ValueError, RuntimeError) as err:  # e.g. importances of constant params
                print(f"skipped {name} ({err})", flush=True)
            finally:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
    return written
