"""The shared MLflow fixture is a real tracking server: runs, artifacts and the registry work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_mlflow_fixture_sets_the_env_and_stores_runs_and_artifacts(
    mlflow_tracking_uri: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_tracking_uri
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    mlflow.set_experiment("fixture-check")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_metric("answer", 42.0)
        mlflow.log_artifact(str(note))

    client = MlflowClient(mlflow_tracking_uri)
    stored = client.get_run(run.info.run_id)
    assert stored.data.metrics["answer"] == 42.0
    # artifacts go through the server (mlflow-artifacts:/), not to a local path of ours
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
