"""`modstack up / down / status / logs`: the local stack's lifecycle on top of supervisord.

`up` adds what supervisord does not know: checks before starting, start order by stage,
health checks with a bound, and clear errors with the tail of the log of whatever failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from modstack.processes import log_tail
from modstack.settings import CommonSettings
from modstack.waits import wait_until
from stack.preflight import preflight
from stack.programs import (
    PROFILES,
    STAGES,
    Profile,
    Program,
    StackError,
    StackPaths,
    StackSettings,
    program_environment,
    render_prometheus_config,
    select_programs,
    stack_paths,
    stack_programs,
)
from stack.supervisor import (
    pid_alive,
    pidfile_supervisord,
    render_supervisord_conf,
    rpc,
    start_supervisord,
    supervisord_running,
    sync_config,
)

Say = Callable[[str], None]


@dataclass
class UpResult:
    """What `up` did: seconds to healthy per program, what it skipped and what failed."""

    started: dict[str, float] = field(default_factory=dict)
    already_running: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def up(
    settings: CommonSettings,
    only: Sequence[str] | None = None,
    say: Say = print,
    profile: Profile | None = None,
) -> UpResult:
    """Start the stack (or the `only` subset) under supervisord and wait until each program
    is healthy, stage by stage. `profile` (default: the running stack's, else STACK_PROFILE)
    picks the local or the scale profile. Raises StackError when a check fails before anything
    starts; a program that fails while starting is in `UpResult.failed` (with its log tail)."""
    paths = stack_paths(settings)
    stack = _profile_to_start(paths, profile)
    every = stack_programs(settings, stack)
    selected = select_programs(every, only)
    result = UpResult()

    # An optional program with nothing to run is left out, loudly; asked for by name, it is
    # an error like any other.
    for program in list(selected):
        if program.optional and program.missing and not only:
            say(f"[skip] {program.name}: {program.missing}")
            result.skipped.append(program.name)
            selected.remove(program)

    running_now = _running_programs(paths)
    to_start = [p for p in selected if p.name not in running_now]
    result.already_running = [p.name for p in selected if p.name in running_now]
    for name in result.already_running:
        say(f"[ok] {name}: already running")

    problems = preflight(to_start)
    if problems:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(problems))
    if not to_start:
        return result

    _configure_supervisord(settings, stack, paths, every)
    for stage in STAGES:
        batch = [p for p in to_start if p.stage == stage]
        if not batch:
            continue
        start_and_wait(paths, batch, result, say)
        if result.failed:
            break  # later stages need this one
    return result


def _profile_to_start(paths: StackPaths, profile: Profile | None) -> StackSettings:
    """The stack settings with the profile asked for by name, or else the running stack's (a
    plain `up` adds to what runs), or else STACK_PROFILE; another profile than the running
    one is refused."""
    running = read_profile(paths)
    stack = StackSettings()
    chosen = profile or running
    if chosen is not None:
        stack = stack.model_copy(update={"stack_profile": chosen})
    if running is not None and running != stack.stack_profile:
        raise StackError(
            f"the stack runs the {running} profile; `modstack down` first to start the "
            f"{stack.stack_profile} profile"
        )
    return stack


def _configure_supervisord(
    settings: CommonSettings, stack: StackSettings, paths: StackPaths, every: list[Program]
) -> None:
    """Write the configs, start supervisord (or make the running one read them), record the
    profile."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    settings.data_dir.resolve().joinpath("mlflow", "artifacts").mkdir(parents=True, exist_ok=True)
    env = program_environment(settings, stack)
    paths.conf.write_text(render_supervisord_conf(every, paths, env))
    paths.prometheus_conf.write_text(render_prometheus_config(every))
    if supervisord_running(paths):
        sync_config(paths)
    else:
        start_supervisord(paths)
    paths.profile.write_text(stack.stack_profile + "\n")


def read_profile(paths: StackPaths) -> Profile | None:
    """The profile of the running stack, None when none runs (or it predates profiles)."""
    if not supervisord_running(paths):
        return None
    try:
        found = paths.profile.read_text().strip()
    except OSError:
        return None
    return found if found in PROFILES else None


def stack_settings_of(paths: StackPaths) -> StackSettings:
    """The stack settings from the environment, with the running stack's profile."""
    stack = StackSettings()
    running = read_profile(paths)
    return stack.model_copy(update={"stack_profile": running}) if running else stack


def _running_programs(paths: StackPaths) -> set[str]:
    if not supervisord_running(paths):
        return set()
    infos = rpc(paths).supervisor.getAllProcessInfo()
    return {i["name"] for i in infos if i["statename"] in ("RUNNING", "STARTING")}


def start_and_wait(paths: StackPaths, batch: list[Program], result: UpResult, say: Say) -> UpResult:
    """Start a stage's programs together, then wait for each to be healthy (bounded);
    records each in `result` (returned) as started or failed."""
    server = rpc(paths)
    started_at = time.monotonic()
    log_start: dict[str, int] = {}
    for program in list(batch):
        # a failure shows the log of this start only; earlier runs stay in the file
        log = paths.log_of(program.name)
        log_start[program.name] = log.stat().st_size if log.exists() else 0
        note = _before_start(program, result, say)
        if note is None:
            batch.remove(program)
            continue
        server.supervisor.startProcess(program.name, False)
        say(f"[..] {program.name}: starting" + (f" ({note})" if note else ""))
    if not batch:
        return result
    pending = {p.name: p for p in batch}
    first_pid: dict[str, int] = {}

    def check_pending() -> bool:
        """One pass over the programs still starting; True while some are."""
        for name, program in list(pending.items()):
            info = server.supervisor.getProcessInfo(name)
            elapsed = time.monotonic() - started_at
            outcome, detail = _check_start(program, info, first_pid)
            if outcome == "waiting" and elapsed > program.start_timeout_s:
                outcome, detail = "failed", f"not healthy after {program.start_timeout_s:g} s"
            if outcome == "up":
                result.started[name] = elapsed
                where = f" on 127.0.0.1:{program.port}" if program.port else ""
                what = "done" if program.oneshot else f"healthy{where}"
                say(f"[ok] {name}: {what} in {elapsed:.1f} s" + (f" ({detail})" if detail else ""))
                del pending[name]
            elif outcome == "failed":
                with contextlib.suppress(xmlrpc.client.Fault):
                    server.supervisor.stopProcess(name)
                tail = log_tail(paths.log_of(name), since=log_start[name])
                result.failed[name] = f"{detail}\n{tail}".strip()
                say(f"[FAIL] {name}: {detail}\n{tail}")
                del pending[name]
        return bool(pending)

    # Each program's own start_timeout_s turns "waiting" into "failed", so the polling ends
    # by itself; the outer bound only guards against a supervisord that stops answering.
    Retrying(
        stop=stop_after_delay(max(p.start_timeout_s for p in batch) + 30),
        wait=wait_fixed(0.2),
        retry=retry_if_result(bool),
        retry_error_callback=lambda _: _give_up_waiting(pending),
    )(check_pending)
    return result


def _before_start(program: Program, result: UpResult, say: Say) -> str | None:
    """Run the program's preparation (e.g. initdb); its note, or None when it failed (the
    program is then recorded as failed and not started)."""
    if program.before_start is None:
        return ""
    try:
        return program.before_start()
    except Exception as exc:  # its message says what went wrong and what to do
        result.failed[program.name] = f"could not prepare its start: {exc}"
        say(f"[FAIL] {program.name}: could not prepare its start: {exc}")
        return None


def _give_up_waiting(pending: dict[str, Program]) -> bool:
    raise StackError(
        f"{', '.join(pending)} still starting after every start timeout passed; "
        "supervisord may have stopped answering (`modstack logs supervisord`)"
    )


def _check_start(
    program: Program, info: dict[str, Any], first_pid: dict[str, int]
) -> tuple[Literal["up", "failed", "waiting"], str]:
    """Where a starting program stands, from its supervisord state and its health probe;
    the text is the failure reason, or a note for a program that is up."""
    failure = _startup_failure(program, info, first_pid)
    if failure is not None:
        return "failed", failure
    if program.oneshot:
        return ("up", "") if info["statename"] == "EXITED" else ("waiting", "")
    if info["statename"] != "RUNNING" or not _healthy(program):
        return "waiting", ""
    try:
        return "up", program.after_start() if program.after_start else ""
    except Exception as exc:  # e.g. topic creation refused: report it, do not crash `up`
        return "failed", f"healthy, but its set-up step failed: {exc}"


def _healthy(program: Program) -> bool:
    try:
        return program.health()
    except Exception:  # a probe of a starting server may fail in many ways: "not yet"
        return False


def _startup_failure(
    program: Program, info: dict[str, Any], first_pid: dict[str, int]
) -> str | None:
    state = info["statename"]
    if program.oneshot:
        if state == "EXITED" and info["exitstatus"] != 0:
            return f"exited with code {info['exitstatus']}"
        if state in ("FATAL", "BACKOFF"):
            return f"could not run ({info.get('spawnerr') or state})"
        return None
    if state in ("EXITED", "FATAL", "BACKOFF"):
        detail = info.get("spawnerr") or f"exit code {info['exitstatus']}"
        return f"exited while starting ({detail})"
    pid = info.get("pid") or 0
    if pid and first_pid.setdefault(program.name, pid) != pid:
        return "exited while starting and was restarted by supervisord"
    return None


def down(settings: CommonSettings, say: Say = print, timeout_s: float = 30.0) -> bool:
    """Stop everything the stack's supervisord runs, then supervisord itself. Idempotent:
    returns False (and says so) when nothing was running."""
    return shutdown(stack_paths(settings), say, timeout_s)


def shutdown(paths: StackPaths, say: Say = print, timeout_s: float = 30.0) -> bool:
    """`down` for the supervisord of these paths."""
    if supervisord_running(paths):
        server = rpc(paths)
        pid = int(server.supervisor.getPID())
        names = [i["name"] for i in server.supervisor.getAllProcessInfo() if i["pid"]]
        say(f"stopping {', '.join(names) or 'supervisord'} ...")
        # Stop the programs first (in reverse start order, each with its stop signal), then
        # supervisord: its own shutdown left Tansu running ~8 s longer (measured), 0.1 s here.
        with contextlib.suppress(xmlrpc.client.Fault):
            server.supervisor.stopAllProcesses(True)
        server.supervisor.shutdown()  # what `supervisorctl shutdown` sends: stop all, then exit
    else:
        found = pidfile_supervisord(paths)
        if found is None:
            stale = paths.pidfile.exists()
            paths.pidfile.unlink(missing_ok=True)
            say("stack is not running" + (" (removed a stale pidfile)" if stale else ""))
            return False
        pid = found
        # alive but not answering on its socket: SIGTERM makes supervisord stop its children
        say(f"supervisord (pid {pid}) does not answer on {paths.socket}; sending SIGTERM")
        os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), timeout_s, f"shutdown of supervisord (pid {pid})")
    except TimeoutError:
        raise StackError(
            f"supervisord (pid {pid}) still runs {timeout_s:g} s after shutdown; "
            f"see {paths.logs / 'supervisord.log'}"
        ) from None
    paths.profile.unlink(missing_ok=True)
    say("stack stopped")
    return True


@dataclass(frozen=True)
class ProgramStatus:
    """One row of `modstack status`."""

    name: str
    state: str
    pid: int | None
    port: int | None
    health: str
    log: Path
    failed: bool  # crashed, gave up, or (a oneshot) exited with an error


def status(settings: CommonSettings) -> list[ProgramStatus] | None:
    """Per program: supervisord state, pid, port, health probe, log path; None when the
    stack is not running."""
    paths = stack_paths(settings)
    if not supervisord_running(paths):
        return None
    programs = {p.name: p for p in stack_programs(settings, stack_settings_of(paths))}
    rows = []
    for info in rpc(paths).supervisor.getAllProcessInfo():
        program = programs.get(info["name"])
        state = info["statename"]
        oneshot = program is not None and program.oneshot
        exited_badly = state == "EXITED" and (info["exitstatus"] != 0 or not oneshot)
        if program is None:
            health = "-"
        elif oneshot:
            health = "ok" if state == "EXITED" and info["exitstatus"] == 0 else "-"
        elif state == "RUNNING":
            try:
                health = "ok" if program.health(for_status=True) else "not ready"
            except Exception as exc:
                health = f"error: {type(exc).__name__}"
        else:
            health = "-"
        rows.append(
            ProgramStatus(
                name=info["name"],
                state=state,
                pid=info["pid"] or None,
                port=program.port if program else None,
                health=health,
                log=Path(info["stdout_logfile"]),
                failed=state in ("FATAL", "BACKOFF") or exited_badly,
            )
        )
    order = list(programs)
    rows.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))
    return rows


def log_path(settings: CommonSettings, name: str) -> Path:
    """The log file of a stack program (`supervisord` for the manager's own log)."""
    paths = stack_paths(settings)
    if name == "supervisord":
        return paths.logs / "supervisord.log"
    known = [p.name for p in stack_programs(settings, stack_settings_of(paths))]
    if name not in known:
        raise StackError(f"unknown process {name!r}; the stack has: {', '.join(known)}")
    return paths.log_of(name)
