"""Where an export may write, checked before anything is written and before any training starts.

A TensorBoard folder and a sqlite MLflow store must be writable; an http(s) MLflow server must answer within a
few seconds (MLflow's own client retries for minutes). The service trains configs submitted over HTTP, so there a
folder or sqlite file must lie inside AMST_EXPORT_ROOT (default <AMST_ARTIFACTS>/exports; a relative path is taken
relative to it), symlinks resolved, as a run's data must lie inside AMST_DATA_ROOT (amst_core.datafiles). The
command line (`amst train`, `amst export`) writes wherever its user says.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from amst_core.config import ConfigError, RunConfig
from amst_core.datafiles import paths_confined

PROBE_TIMEOUT_S = 5.0
# Any answer but these means the server is there: 401/403 ask for the credentials MLflow's client sends
# (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD), which the probe does not.
NOT_MLFLOW = (404, 405)
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
SQLITE = "sqlite:///"


def check_exports(cfg: RunConfig) -> None:
    """Every export target of the run can be written; a ConfigError naming export.tensorboard or export.mlflow."""
    if cfg.export.tensorboard is not None:
        tensorboard_folder(cfg.export.tensorboard, "export.tensorboard")
    if cfg.export.mlflow is not None:
        tracking_uri(cfg.export.mlflow, "export.mlflow")


def tensorboard_folder(given: str | Path, field: str) -> Path:
    """The folder the run folders of TensorBoard go in, made if missing and found writable."""
    folder = confined(Path(given).expanduser(), field, "the TensorBoard folder")
    writable_folder(folder, field)
    return folder


def tracking_uri(uri: str, field: str) -> str:
    """An MLflow tracking URI that can be written now: a sqlite file's folder writable (the URI returned names the
    file where it will be, which on the service is inside AMST_EXPORT_ROOT), or an http(s) server answering."""
    from pydantic import ValidationError

    from amst_core.config import ExportConfig

    try:
        ExportConfig(mlflow=uri)  # the schemes a run's config takes, for `amst export --to mlflow` too
    except ValidationError as err:
        raise ConfigError(field, err.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if uri.lower().startswith(SQLITE):
        database = confined(Path(uri[len(SQLITE):]).expanduser(), field, "the MLflow database")
        if database.is_dir():
            raise ConfigError(field, f"{database} is a folder; name the database file, e.g. {database}/mlflow.db")
        writable_folder(database.parent, field)
        return SQLITE + str(database)
    probe(uri, field)
    return uri


def confined(path: Path, field: str, what: str) -> Path:
    """`path` as given on the command line; on the service resolved inside AMST_EXPORT_ROOT, or a ConfigError."""
    if not paths_confined():
        return path
    from amst_core.settings import get_settings

    root = Path(os.path.realpath(get_settings().export_dir))
    real = Path(os.path.realpath(root / path))  # an absolute path replaces the root in the join
    if real != root and not real.is_relative_to(root):
        raise ConfigError(field, f"{what} {path} lies outside AMST_EXPORT_ROOT ({root}); a run on the service "
                                 "writes exports only there: give a path relative to it")
    return real


def writable_folder(folder: Path, field: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(field, f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(field, f"cannot write in {folder}: {err.strerror or err}") from None


def probe(uri: str, field: str) -> None:
    """The tracking server answers as an MLflow server within PROBE_TIMEOUT_S, without retries."""
    url = uri.rstrip("/") + PROBE_PATH
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code in NOT_MLFLOW:
            raise ConfigError(field, f"{uri} answers, but not as an MLflow tracking server (HTTP {err.code} at "
                                     f"{PROBE_PATH.partition('?')[0]})") from None
        return  # it answered: what the answer means is for MLflow's client to say
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise ConfigError(field, f"the MLflow tracking server {uri} does not answer within {PROBE_TIMEOUT_S:.0f} s "
                                 f"({reason}); start it (mlflow server) or check the URI") from None
