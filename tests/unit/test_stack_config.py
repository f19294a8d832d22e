"""The local stack's configuration and pre-start checks, without starting anything."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from modstack.settings import CommonSettings
from modstack.waits import GiveUp, free_port, wait_until
from stack.preflight import preflight
from stack.programs import (
    Program,
    StackError,
    StackPaths,
    program_environment,
    render_prometheus_config,
    select_programs,
    stack_programs,
)
from stack.supervisor import render_supervisord_conf


def _settings(tmp_path: Path, **overrides: str) -> CommonSettings:
    values = {
        "run_dir": str(tmp_path / "run"),
        "data_dir": str(tmp_path / "data"),
        "kafka_bootstrap_servers": "127.0.0.1:19300",
        "mlflow_tracking_uri": "http://127.0.0.1:19301",
        "serving_addr": "http://127.0.0.1:19310",
        "ingestion_addr": "http://127.0.0.1:19311",
        "monitoring_addr": "http://127.0.0.1:19312",
        "canary_addr": "http://127.0.0.1:19313",
        **overrides,
    }
    return CommonSettings(**values)  # type: ignore[arg-type]


def _by_name(programs: list[Program]) -> dict[str, Program]:
    return {p.name: p for p in programs}


def test_programs_take_their_ports_from_settings(tmp_path: Path) -> None:
    programs = _by_name(stack_programs(_settings(tmp_path)))
    assert programs["kafka"].port == 19300
    assert "tcp://127.0.0.1:19300" in programs["kafka"].argv
    assert programs["mlflow"].port == 19301
    assert programs["serving"].port == 19310
    assert programs["ingestion"].port == 19311
    assert programs["monitoring"].port == 19312
    assert programs["canary"].port == 19313
    assert programs["canary"].ready_url == "http://127.0.0.1:19313/healthz"
    assert programs["canary"].status_url == "http://127.0.0.1:19313/readyz"


def test_programs_are_in_start_order_infrastructure_first(tmp_path: Path) -> None:
    names = [p.name for p in stack_programs(_settings(tmp_path))]
    # the S3 server the durable broker keeps its log in, then the infrastructure
    assert names[:4] == ["s3", "kafka", "mlflow", "prometheus"]
    assert names.index("feast-apply") < names.index("processor") < names.index("serving")


def test_every_python_program_runs_a_module_that_exists(tmp_path: Path) -> None:
    # `python -m NAME` of a module that moved fails only when the stack starts it
    import importlib.util

    for program in stack_programs(_settings(tmp_path)):
        argv = list(program.argv)
        if "-m" not in argv:
            continue
        module = argv[argv.index("-m") + 1]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{program.name}: no module {module}"
        if spec.submodule_search_locations:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__"), f"{program.name}: {module}"


def test_a_remote_broker_or_tracking_server_is_not_started_locally(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        kafka_bootstrap_servers="kafka.internal:9092",
        mlflow_tracking_uri="https://mlflow.internal",
    )
    names = {p.name for p in stack_programs(settings)}
    assert "kafka" not in names
    assert "mlflow" not in names


def test_mlflow_stores_under_data_dir(tmp_path: Path) -> None:
    mlflow = _by_name(stack_programs(_settings(tmp_path)))["mlflow"]
    command = " ".join(mlflow.argv)
    assert f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}" in command
    assert f"--artifacts-destination {tmp_path / 'data' / 'mlflow' / 'artifacts'}" in command


def test_generated_config_is_accepted_by_supervisord(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = StackPaths(tmp_path / "run")
    paths.logs.mkdir(parents=True)
    programs = stack_programs(settings)
    paths.conf.write_text(render_supervisord_conf(programs, paths, program_environment(settings)))

    # supervisord's own parser: what it would run, and how
    options = ServerOptions()
    options.realize(args=["-c", str(paths.conf)])
    groups = {g.name: g.process_configs[0] for g in options.process_group_configs}
    assert sorted(groups) == sorted(p.name for p in programs)
    assert options.pidfile == str(paths.pidfile)
    assert options.server_configs[0]["file"] == str(paths.socket)
    for program in programs:
        config = groups[program.name]
        assert config.stdout_logfile == str(paths.log_of(program.name))
        assert config.redirect_stderr
        assert not config.autostart  # `up` starts programs stage by stage
        assert config.stopasgroup and config.killasgroup
        assert config.environment["DATA_DIR"] == str(tmp_path / "data")
        assert config.environment["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19300"
    assert groups["kafka"].stopsignal.name == "SIGINT"  # Tansu drains 5 s on SIGTERM
    assert groups["feast-apply"].autorestart is False
    assert groups["mlflow"].environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" not in groups["serving"].environment
    # services stop before the broker and MLflow they depend on
    assert groups["serving"].priority > groups["feast-apply"].priority > groups["kafka"].priority


def test_percent_signs_in_values_survive_supervisord_interpolation(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = StackPaths(tmp_path / "run")
    paths.logs.mkdir(parents=True)
    env = {**program_environment(settings), "NOTE": "50% sampled"}
    paths.conf.write_text(render_supervisord_conf(stack_programs(settings), paths, env))
    options = ServerOptions()
    options.realize(args=["-c", str(paths.conf)])
    kafka = next(g for g in options.process_group_configs if g.name == "kafka")
    assert kafka.process_configs[0].environment["NOTE"] == "50% sampled"


def test_a_run_dir_with_a_percent_sign_is_refused_clearly(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(StackError, match="%"):
        render_supervisord_conf(stack_programs(settings), StackPaths(tmp_path / "run 100%"), {})


def test_a_taken_port_is_reported_with_the_process_that_holds_it() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        problems = preflight([Program(name="kafka", argv=("x",), stage="infra", port=port)])
    assert len(problems) == 1
    assert f"kafka: port {port} is already taken by pid {os.getpid()}" in problems[0]
    assert "python" in problems[0] or "pytest" in problems[0]  # the holder's command line


def test_a_free_port_passes_the_checks() -> None:
    program = Program(
        name="serving",
        argv=("python", "-m", "services.serving"),
        stage="services",
        port=free_port(),
    )
    assert preflight([program]) == []


def test_a_missing_binary_says_what_to_install() -> None:
    program = Program(
        name="prometheus",
        argv=("prometheus",),
        stage="infra",
        missing="the `prometheus` binary is not installed: `sudo apt-get install prometheus`",
    )
    [problem] = preflight([program])
    assert "apt-get install prometheus" in problem


def test_only_selects_known_programs_and_names_the_known_ones(tmp_path: Path) -> None:
    programs = stack_programs(_settings(tmp_path))
    # the broker brings the S3 server it keeps its log in
    chosen = select_programs(programs, ["mlflow", "kafka"])
    assert [p.name for p in chosen] == ["s3", "kafka", "mlflow"]
    with pytest.raises(StackError, match=r"unknown process kafak; the stack has: .*kafka"):
        select_programs(programs, ["kafak"])


def test_wait_until_names_what_did_not_come_up_and_the_detail() -> None:
    with pytest.raises(TimeoutError) as excinfo:
        wait_until(
            lambda: 1 / 0,
            0.2,
            "the widget at 127.0.0.1:1",
            interval_s=0.05,
            detail=lambda: "log tail here",
        )
    message = str(excinfo.value)
    assert message.startswith("the widget at 127.0.0.1:1 did not come up within 0.2 s")
    assert "ZeroDivisionError" in message
    assert message.endswith("log tail here")


def test_wait_until_gives_up_at_once_when_told() -> None:
    def exited() -> bool:
        raise GiveUp("process exited with code 3")

    with pytest.raises(GiveUp, match="code 3"):
        wait_until(exited, 30, "a process")


def test_prometheus_scrapes_each_service_on_the_port_it_listens_on_here(tmp_path: Path) -> None:
    import yaml

    programs = stack_programs(_settings(tmp_path, prometheus_url="http://127.0.0.1:19390"))
    config = yaml.safe_load(render_prometheus_config(programs))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    ports = {p.name: p.port for p in programs}
    assert targets["serving"] == ["127.0.0.1:19310"]
    assert targets["canary"] == ["127.0.0.1:19313"]
    assert targets["processor"] == [f"127.0.0.1:{ports['processor']}"]
    assert all(Path(rule).is_absolute() for rule in config["rule_files"])
    # the local stack's Prometheus listens where PROMETHEUS_URL says
    assert "--web.listen-address=127.0.0.1:19390" in _by_name(programs)["prometheus"].argv


def test_rendered_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (`sudo apt-get install prometheus`)")
    conf = tmp_path / "prometheus.yml"
    conf.write_text(render_prometheus_config(stack_programs(_settings(tmp_path))))
    checked = subprocess.run(
        [promtool, "check", "config", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
