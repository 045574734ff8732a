"""Push a run to the Hugging Face Hub: model card, weights, tokenizer and, optionally, the export.

    python -m tfsent.push --run-dir runs/imdb --push-to-hub you/tfsent-imdb
    python -m tfsent.push --run-dir runs/imdb --push-to-hub you/tfsent-imdb \\
        --saved-model exported/tfsent --hub-private
    python -m tfsent.push --run-dir runs/imdb --push-to-hub you/tfsent-imdb --dry-run
    python -m tfsent.fit ... --push-to-hub you/tfsent-imdb        # at the end of a fit

One ``HfApi.upload_folder`` of the run folder, restricted by ``allow_patterns`` to what a model
repository needs (:data:`UPLOAD_PATTERNS`); with ``--saved-model``, a second one puts the export
under ``saved_model/<version>/`` (TF Serving's layout). The token comes from ``--hub-token``, else
``HF_TOKEN`` (else a ``huggingface-cli login``). Hub or network errors are one line, exit 2, and
the run folder keeps everything it had::

    >>> from huggingface_hub.utils import filter_repo_objects
    >>> sorted(filter_repo_objects(["README.md", "model/tf_model.h5", "logs/train/events",
    ...                             "checkpoints/best.weights.h5", "confusion_matrix.png"],
    ...                            allow_patterns=UPLOAD_PATTERNS))
    ['README.md', 'confusion_matrix.png', 'model/tf_model.h5']
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tfsent.cli import add_verbose_flag, configure_logging
from tfsent.errors import OneLineArgumentParser, fail, first_line, run_cli

# What a Hub model repository of a run holds: the card and its images, the run's options and
# metrics, and what from_pretrained loads. Not checkpoints/, backup/, logs/ or history.csv.
UPLOAD_PATTERNS = [
    "README.md",
    "config.json",
    "metrics.json",
    "model/*",
    "tokenizer/*",
    "confusion_matrix*.png",
    "reliability_diagram*.png",
    "training_curves.png",
]
SAVED_MODEL_DIR = "saved_model"


def resolve_saved_model(path: str | Path) -> tuple[Path, int]:
    """A version folder (``exported/tfsent/3``) or a model base path (its newest version)."""
    from tfsent.versions import existing_versions

    folder = Path(path)
    if (folder / "saved_model.pb").is_file():
        if not folder.name.isdigit():
            fail(f"--saved-model {folder} is not in a numbered version folder; pass the "
                 "version folder python -m tfsent.export wrote (e.g. exported/tfsent/3)")
        return folder, int(folder.name)
    versions = existing_versions(folder)
    if not versions or not (folder / str(versions[-1]) / "saved_model.pb").is_file():
        fail(f"--saved-model {folder} holds no SavedModel; pass an export version folder or "
             "its model base path (e.g. exported/tfsent)")
    return folder / str(versions[-1]), versions[-1]


def _files(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]


def upload_plan(run_dir: str | Path, saved_model: str | Path | None = None) -> list[str]:
    """The repository paths a push uploads, selected with the patterns ``upload_folder`` gets
    (and the ignore list it adds), in upload order."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    run = Path(run_dir)
    paths = list(filter_repo_objects(_files(run), allow_patterns=UPLOAD_PATTERNS,
                                     ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    if saved_model is not None:
        folder, version = resolve_saved_model(saved_model)
        paths += [f"{SAVED_MODEL_DIR}/{version}/{p}" for p in filter_repo_objects(
            _files(folder), ignore_patterns=DEFAULT_IGNORE_PATTERNS)]
    return paths


def check_repo_id(repo_id: str) -> None:
    """A one-line error for a repo id the Hub would reject (checked offline)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        fail(f"--push-to-hub {repo_id!r} is not a Hub repo id ({first_line(err)}); "
             "pass e.g. your-name/tfsent-imdb")


def _hub_errors() -> tuple[type[BaseException], ...]:
    import requests
    from huggingface_hub.errors import HfHubHTTPError

    # HfHubHTTPError: 401/403/404/...; requests: refused, DNS, timeouts; OSError also covers
    # OfflineModeIsEnabled; ValueError: a repo id or card the Hub rejects.
    return (HfHubHTTPError, requests.RequestException, OSError, ValueError)


def push_run(run_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False,
             saved_model: str | Path | None = None, api: Any = None) -> str:
    """Upload a finished run (and optionally its export) to ``repo_id``; return the repo URL.

    The card is rebuilt with ``repo_id`` in its examples and checked offline; it is written into
    the run only once the Hub answered, so an unreachable Hub leaves the run as it was.
    """
    from huggingface_hub import HfApi

    from tfsent.card import CARD_NAME, build_model_card, check_model_card, write_model_card
    from tfsent.rundir import RunDir

    run = RunDir(run_dir).check()
    if not run.finished:
        fail(f"run directory {run.path} has no metrics.json; push a finished "
             "python -m tfsent.fit run")
    check_repo_id(repo_id)
    version_folder, version = (resolve_saved_model(saved_model) if saved_model is not None
                               else (None, None))
    card = build_model_card(run, repo_id=repo_id, saved_model_version=version)

    api = api or HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        # The Hub answered: only now is the run's card rewritten (with the repo id).
        write_model_card(run, card=card)
        check_model_card(run.path / CARD_NAME)
        api.upload_folder(repo_id=repo_id, folder_path=str(run.path), repo_type="model",
                          allow_patterns=list(UPLOAD_PATTERNS),
                          commit_message=f"tfsent run {run.path.name}")
        if version_folder is not None:
            api.upload_folder(repo_id=repo_id, folder_path=str(version_folder),
                              path_in_repo=f"{SAVED_MODEL_DIR}/{version}", repo_type="model",
                              commit_message=f"tfsent SavedModel version {version}")
    except _hub_errors() as err:
        fail(f"could not push to the Hub repo {repo_id} ({_reason(err, api)}); the "
             f"run in {run.path} is unchanged: check the network, HF_TOKEN or --hub-token and "
             f"the repo id, then run python -m tfsent.push --run-dir {run.path} "
             f"--push-to-hub {repo_id}")
    return str(url)


def _reason(err: BaseException, api: Any) -> str:
    """The cause of a failed push in a few words (requests' own messages run to pages)."""
    import requests
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return f"cannot reach {getattr(api, 'endpoint', 'the Hub')}: {type(err).__name__}"
    first = first_line(err)
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}: {first}"
    return f"{type(err).__name__}: {first}"


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub-token", default=None,
                        help="Hugging Face token (default: the HF_TOKEN environment variable, "
                        "else the huggingface-cli login).")
    parser.add_argument("--hub-private", action="store_true",
                        help="Create the repository private.")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.push",
        description="Upload a finished run (model card, model/, tokenizer/, metrics, optionally "
        "the SavedModel) to a Hugging Face Hub model repository.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", required=True, help="Run folder written by tfsent.fit.")
    parser.add_argument("--push-to-hub", required=True, metavar="REPO_ID",
                        help="Hub repository id, e.g. your-name/tfsent-imdb (created if absent).")
    add_hub_arguments(parser)
    parser.add_argument("--saved-model", default=None,
                        help="Also upload this export (a version folder, or its model base path "
                        "for the newest version) as saved_model/<version>/.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Rewrite and check the card, list the files, upload nothing.")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.dry_run:
        from tfsent.card import CARD_NAME, check_model_card, write_model_card
        from tfsent.rundir import RunDir

        run = RunDir(args.run_dir).check()
        check_repo_id(args.push_to_hub)
        version = resolve_saved_model(args.saved_model)[1] if args.saved_model else None
        write_model_card(run, repo_id=args.push_to_hub, saved_model_version=version)
        check_model_card(run.path / CARD_NAME)
        for path in upload_plan(run.path, args.saved_model):
            print(path)
        return 0
    url = push_run(args.run_dir, args.push_to_hub, token=args.hub_token,
                   private=args.hub_private, saved_model=args.saved_model)
    print(f"pushed {args.run_dir} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
