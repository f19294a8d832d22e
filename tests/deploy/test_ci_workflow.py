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
    used = set()
    for job in _workflow()["jobs"].values():
        for step in job.get("steps", []):
            for command in re.findall(r"\bmake ([^&|;\n]+)", step.get("run", "")):
                used.update(w for w in command.split() if "=" not in w)
    assert used, "the workflow runs no make target"
    assert used - targets == set()


def test_the_model_stages_run_in_order() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["gate"]["needs"] == ["model", "integration"]
    assert jobs["shadow"]["needs"] == "gate"
    assert jobs["canary"]["needs"] == "shadow"
