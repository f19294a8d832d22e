"""schemathesis against each service's OpenAPI document, on the real service processes.

Every service here runs as its own process (`python -m services.<name>`) on a free port, then
schemathesis's CLI fuzzes it from outside with a fixed seed and a bounded number of examples
per operation, all checks on: no server error, every status code and content type documented,
responses matching their schemas, and schema-valid requests accepted (so the schema has to say
what the API accepts). The request count of each run goes to var/run/results/schemathesis.json.

To add a service: one `Target` in TARGETS (a name, how to start it, the token it wants).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modstack.processes import BackgroundProcess, child_env, http_ok, log_tail
from modstack.waits import free_port
from tests.support.profile import profile_suffix

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# one file per profile: both sessions of `make test` run these at once
RESULTS = REPO_ROOT / "var" / "run" / "results" / f"schemathesis{profile_suffix()}.json"
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
EXAMPLES = 50
SEED = 7
RUN_TIMEOUT_S = 420.0
CLIENT_KEY = "contract-test-key"
ADMIN_TOKEN = "contract-admin-token"


@dataclass(frozen=True)
class Target:
    """A service to fuzz: its module, the env it needs (given the free port and helpers)."""

    name: str
    module: str
    addr_var: str
    env: Callable[[dict[str, str]], dict[str, str]]
    token: str
    needs_mlflow: bool = False


def _common_env(ctx: dict[str, str]) -> dict[str, str]:
    """What every service here gets: the session's broker and the module's data dir."""
    return {"KAFKA_BOOTSTRAP_SERVERS": ctx["kafka"], "DATA_DIR": ctx["data_dir"]}


def ingestion_env(ctx: dict[str, str]) -> dict[str, str]:
    return {
        **_common_env(ctx),
        "INGESTION_CLIENT_KEYS": json.dumps({"contract-test": CLIENT_KEY}),
        "INGESTION_MESSAGES_NEED_KEY": "true",
        # the fuzzer sends hundreds of requests a second; the limit has its own test
        "INGESTION_RATE_PER_S": "0",
    }


def monitoring_env(ctx: dict[str, str]) -> dict[str, str]:
    return {**_common_env(ctx), "MLFLOW_TRACKING_URI": ctx["mlflow"], "RETRAIN_ENABLED": "false"}


def serving_env(ctx: dict[str, str]) -> dict[str, str]:
    """A champion of its own in the session's MLflow (its own model name: the module-level
    registry reset and the other modules' aliases never meet it) and a Feast repo in tmp."""
    from mlflow import MlflowClient

    from features.store import apply_repo, feature_columns, get_store
    from modstack.names import FEATURE_SERVICE_V1
    from tests.support.serving_stack import register_model, training_frame

    data_dir = Path(ctx["data_dir"])
    apply_repo(REPO_ROOT / "features", data_dir)
    columns = feature_columns(get_store(REPO_ROOT / "features", data_dir), FEATURE_SERVICE_V1)
    prefix = f"contract-serving-{uuid.uuid4().hex[:8]}-"
    model_name = f"{prefix}spam-classifier"
    version = register_model(
        ctx["mlflow"], model_name, training_frame(data_dir, columns), columns, seed=1
    )
    MlflowClient(ctx["mlflow"]).set_registered_model_alias(model_name, "champion", version)
    return {
        **_common_env(ctx),
        "RUN_DIR": str(data_dir / "run"),
        "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
        "MLFLOW_TRACKING_URI": ctx["mlflow"],
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SERVING_MODEL_PREFIX": prefix,
        "SERVING_POLICIES": "spam",
        "SERVING_WORKERS": "1",
        # the fuzzer's requests come one after another: shedding has its own test
        "SERVING_LATENCY_BUDGET_MS": "0",
    }


def canary_env(ctx: dict[str, str]) -> dict[str, str]:
    return {
        **_common_env(ctx),
        "MLFLOW_TRACKING_URI": ctx["mlflow"],
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CANARY_LABEL_JOIN": "false",
    }


TARGETS = [
    Target("ingestion", "services.ingestion", "INGESTION_ADDR", ingestion_env, CLIENT_KEY),
    Target(
        "monitoring",
        "services.monitoring",
        "MONITORING_ADDR",
        monitoring_env,
        "dev-admin-token",
        needs_mlflow=True,
    ),
    Target(
        "serving", "services.serving", "SERVING_ADDR", serving_env, ADMIN_TOKEN, needs_mlflow=True
    ),
    Target("canary", "services.canary", "CANARY_ADDR", canary_env, ADMIN_TOKEN, needs_mlflow=True),
]


def run_schemathesis(base_url: str, token: str, *extra: str) -> tuple[int, str]:
    """Run `schemathesis run` on `base_url`/openapi.json; returns (exit code, output)."""
    argv = [
        SCHEMATHESIS,
        "run",
        f"{base_url}/openapi.json",
        "--url",
        base_url,
        "-n",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        *extra,
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=child_env(
            {
                "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
                "NO_COLOR": "1",
                "PYTHONPATH": str(REPO_ROOT),
            }
        ),
        cwd=REPO_ROOT,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def requests_made(output: str) -> int | None:
    """The request count schemathesis prints in its summary (None if it printed none)."""
    found = re.findall(r"(\d[\d,]*)\s+(?:test cases|generated|requests)", output)
    return int(found[-1].replace(",", "")) if found else None


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, object]]:
    found: dict[str, object] = {}
    yield found
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update(found)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_service_holds_its_openapi_contract_under_fuzzing(
    target: Target,
    kafka_bootstrap: str,
    tmp_path: Path,
    results: dict[str, object],
    request: pytest.FixtureRequest,
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    mlflow = request.getfixturevalue("mlflow_tracking_uri") if target.needs_mlflow else ""
    ctx = {"kafka": kafka_bootstrap, "mlflow": mlflow, "data_dir": str(tmp_path)}
    env = child_env({**target.env(ctx), target.addr_var: base_url, "BIND_HOST": "127.0.0.1"})
    log_path = tmp_path / f"{target.name}.log"
    with BackgroundProcess(
        target.name,
        [sys.executable, "-m", target.module],
        log_path,
        ready=lambda: http_ok(f"{base_url}/healthz"),
        timeout_s=90,
        env=env,
        cwd=REPO_ROOT,
    ):
        code, output = run_schemathesis(base_url, target.token)
    count = requests_made(output)
    results[target.name] = {
        "command": f"schemathesis run {base_url}/openapi.json -n {EXAMPLES} --seed {SEED} "
        "--checks all",
        "exit_code": code,
        "test_cases": count,
        "summary": output.strip().splitlines()[-12:],
    }
    assert code == 0, f"{output}\n--- {target.name} log ---\n{log_tail(log_path, 40)}"
