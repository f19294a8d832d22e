"""The CI/CD workflow is valid GitHub Actions (its published schema), and every make target
it runs exists in the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ml-pipeline.yml"


def _workflow() -> dict:
    raw = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True; GitHub reads it as the string "on"
    if True in raw:
        raw["on"] = raw.pop(True)
    return raw


def test_the_workflow_passes_the_github_workflow_schema() -> None:
    validator = Draft7Validator(get_builtin_schema("vendor.github-workflows"))
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(_workflow())]
    assert errors == []


def test_every_make_target_the_workflow_runs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z][\w-]*):", makefile, flags=re.M))
    used: set[str] = set()
    for job in _workflow()["jobs"].values():
        for step in job.get("steps", []):
            for command in re.findall(r"\bmake ([^&|;\n]+)", step.get("run", "")):
                used.update(w for w in command.split() if "=" not in w)
    assert used, "the workflow runs no make target"
    assert used - targets == set()


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def test_the_model_stages_run_in_order() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["gate"]["needs"] == ["model", "integration"]
    assert jobs["train"]["needs"] == ["model", "integration"]
    assert jobs["shadow"]["needs"] == "train"
    # the canary reads the train job's outputs, so it needs the job itself, not only the shadow
    assert set(jobs["canary"]["needs"]) == {"train", "shadow"}
    assert jobs["shadow"]["environment"] == "staging"
    assert jobs["canary"]["environment"] == "production"


def test_pull_requests_gate_in_the_runners_mlflow_and_register_nowhere_else() -> None:
    jobs = _workflow()["jobs"]
    assert "pull_request" in jobs["gate"]["if"] and "== 'pull_request'" in jobs["gate"]["if"]
    assert "MLFLOW_TRACKING_URI" not in str(jobs["gate"])
    assert "make up ONLY=kafka,mlflow" in _runs(jobs["gate"])
    assert "!= 'pull_request'" in jobs["train"]["if"]
    assert "refs/heads/main" in jobs["train"]["if"]


def test_the_gated_model_is_registered_in_the_deployments_registry() -> None:
    train = _workflow()["jobs"]["train"]
    assert train["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    # the local stack brings no MLflow of its own: the secret's registry is the only one
    assert "make up ONLY=kafka\n" in _runs(train) + "\n"
    assert "mlflow" not in re.findall(r"make up ONLY=(\S+)", _runs(train))[0]
    assert "--outcome-json" in _runs(train)
    gate_step = next(s for s in train["steps"] if s.get("id") == "gate")
    assert "GITHUB_OUTPUT" in gate_step["run"]
    assert train["outputs"] == {
        "version": "${{ steps.gate.outputs.version }}",
        "challenger": "${{ steps.gate.outputs.challenger }}",
    }


def test_the_rollout_jobs_roll_out_the_gated_version_not_an_alias() -> None:
    jobs = _workflow()["jobs"]
    assert "needs.train.outputs.challenger == 'true'" in jobs["shadow"]["if"]
    for name in ("shadow", "canary"):
        job = jobs[name]
        assert job["env"]["MODEL_VERSION"] == "${{ needs.train.outputs.version }}"
        starts = re.findall(r"modstack rollout start ([^\n]+)", _runs(job))
        assert len(starts) == 1, f"{name}: one rollout start, got {starts}"
        assert starts[0].startswith('"$MODEL_VERSION" '), f"{name} starts {starts[0]!r}"
        assert "@challenger" not in _runs(job)
    assert "--mode shadow" in _runs(jobs["shadow"])
    assert "--mode canary" in _runs(jobs["canary"])


def test_the_shadow_only_reports_and_never_promotes() -> None:
    shadow = _workflow()["jobs"]["shadow"]
    runs = _runs(shadow)
    assert "promote" not in runs
    assert "/v1/rollout/promote" not in str(shadow)
    # the controller promotes a rollout whose last step passes: the shadow must have a step
    # after the one the job waits for, and the job must end it whatever happened
    steps = re.search(r"--mode shadow --steps ([\d.,]+)", runs)
    assert steps is not None and len(steps.group(1).split(",")) >= 2
    end = shadow["steps"][-1]
    assert "modstack rollout abort" in end["run"]
    assert end["if"] == "always() && steps.start.outcome == 'success'"
    assert any(s.get("id") == "start" and "rollout start" in s["run"] for s in shadow["steps"])


def test_promotion_stays_with_the_canary_controller() -> None:
    for name, job in _workflow()["jobs"].items():
        assert "rollout promote" not in _runs(job), f"{name} promotes"
        assert "/promote" not in _runs(job), f"{name} promotes through the API"
