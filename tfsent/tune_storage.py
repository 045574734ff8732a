"""The search's Optuna storage: opening it, and retrying the trials of workers that died.

A study lives in an Optuna RDB storage (SQLite by default, PostgreSQL for several machines).
Its trials are retried with the options they had, in their own run folder (where fit resumes
their Keras backup), when their worker is known dead:

- on any machine, by Optuna's heartbeats: a trial whose worker sent none for ``GRACE_PERIOD``
  seconds is failed and re-queued by the next worker that asks for a trial;
- on this machine, at once (:func:`retry_dead_trials`): a trial left RUNNING by a process of
  this host that is gone.

    >>> safe_url("postgresql://tfsent:s3cret@db.example/optuna")
    'postgresql://tfsent:***@db.example/optuna'
"""

from __future__ import annotations

import socket
import time
import warnings
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail, first_line
from tfsent.files import pid_alive

if TYPE_CHECKING:
    import optuna

# How often a running trial tells the storage its worker is alive, and how long a silent one
# keeps its trial before another worker retries it (another machine's crash or power loss).
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
MAX_RETRIES = 2


def retry_callback() -> tuple[Any, str]:
    """Optuna's callback that re-queues a dead trial's options, and the ``RDBStorage`` keyword
    it is passed as (both renamed in Optuna 5)."""
    from optuna import storages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
            cls, key = storages.RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
        else:  # Optuna 4
            cls, key = storages.RetryFailedTrialCallback, "failed_trial_callback"
        return cls(max_retry=MAX_RETRIES, inherit_intermediate_values=True), key


def safe_url(url: str) -> str:
    """A storage URL fit for a message: its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it, there is no password to hide in it
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An ``RDBStorage`` with heartbeats (dead workers' trials are retried), or a one-line error."""
    import optuna

    retry, key = retry_callback()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # The heartbeat thread writes while a trial runs: wait for SQLite's lock, do not fail.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                    **{key: retry}, **kwargs)
        except Exception as err:  # SQLAlchemy: bad URL, missing driver, unreachable server, ...
            if "already exists" in str(err) and attempt < 2:
                # Workers started together race to create Optuna's tables in a new database:
                # the loser finds them made; opening again reads them.
                time.sleep(1 + attempt)
                continue
            fail(f"cannot open the Optuna storage {safe_url(url)} ({first_line(err)}); check "
                 "--storage, that the database server is reachable and that its driver is "
                 "installed (e.g. pip install psycopg2-binary for postgresql://)")
    raise AssertionError("unreachable: the last attempt returns or fails")


def requeue(study: optuna.Study, number: int) -> None:
    """Queue trial ``number``'s options again (a retry inherits its folder and reports)."""
    retry, _ = retry_callback()
    retry(study, next(t for t in study.get_trials(deepcopy=False) if t.number == number))


def retry_dead_trials(study: optuna.Study) -> list[int]:
    """Fail and re-queue trials left RUNNING by a killed process of this machine.

    Heartbeats catch dead workers on any machine, but only after ``GRACE_PERIOD``; a process of
    this host that is gone is known dead now, so its trial is retried at once. Returns the
    numbers of the trials retried.
    """
    from optuna.trial import TrialState

    host, retried = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or pid is None or pid_alive(pid):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished meanwhile
            continue
        requeue(study, trial.number)
        retried.append(trial.number)
    return retried
