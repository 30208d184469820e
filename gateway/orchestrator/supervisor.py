"""One app's lifecycle: start, health, restart with backoff, stop, blue/green rollover.

The lifecycle task (`_lifecycle`) owns the start/monitor/restart loop. Operations asked for
from outside (start, stop, restart, rollover, reconfigure) take `_op_lock`, so two never
interleave; they cancel the lifecycle task when they replace it. `_transition` is the only
code that changes `state`.

A replacement asked for while the app serves (restart, code reload, config change, backend
switch) is a rollover: the old process serves until the new one is healthy, and when the new
one fails the wish is kept in `pending` (with the cause in `last_error`) for the next
restart, reload or save to retry. Only apps with a fixed `port` are stopped first.

A supervisor knows nothing of the orchestrator that runs it: what it needs from there (the
project, the options, the inherited backend, the ports, the health checker, the event bus)
comes as one `AppContext`, which the orchestrator replaces when the configuration changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.config.schema import AppConfig, OrchestrationOptions, ProjectConfig
from gateway.errors import AppError, GatewayError
from gateway.events import AppOutput, AppStateChanged, EngineMessage, EventBus
from gateway.orchestrator.backoff import BackoffPolicy
from gateway.orchestrator.health import DEFAULT_HEALTH_PATH, TCP_RULE, HealthChecker, ProbeResult
from gateway.orchestrator.lease import HOST, Lease
from gateway.orchestrator.logs import LogBuffer, LogLine
from gateway.orchestrator.ports import PortAllocator
from gateway.orchestrator.process import AppProcess, spawn
from gateway.orchestrator.protocol import ChildSpec, ServerSettings
from gateway.orchestrator.reload import WatchSpec, watch_files
from gateway.orchestrator.states import IDLE, PENDING, SERVING, AppState, check_transition
from gateway.orchestrator.stats import ProcessTreeStats
from gateway.sanitize import printable
from gateway.servers import resolve_backend_name

log = logging.getLogger("pyserve.orchestrator")
health_log = logging.getLogger("pyserve.orchestrator.health")

#: Probe period while a process starts, before its first good answer.
START_PROBE_INTERVAL = 0.05
#: Longest cause kept (a traceback line can be long; the UI and a 503 body show one line).
MAX_CAUSE = 300
#: How long a request refused by the process in service waits for that process to exit
#: (then it is held for the restart like any request for a restarting app).
EXIT_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class AppContext:
    """What every supervisor of one orchestrator shares: the configuration it runs under
    and the services it uses. The orchestrator hands a new one to each supervisor when the
    configuration (or the inherited backend) changes; a supervisor never changes it."""

    project: ProjectConfig
    options: OrchestrationOptions
    #: The resolved backend apps without their own `backend` run on.
    default_backend: str
    #: Seconds a new process has to answer its first health check.
    start_timeout: float
    events: EventBus
    ports: PortAllocator
    health: HealthChecker


class AppSupervisor:
    def __init__(self, config: AppConfig, context: AppContext) -> None:
        self.name = config.name
        self.config = config
        self.state = AppState.STOPPED
        self.restarts = 0
        self.started_at: float | None = None
        #: Why the app last failed (a crash, an import error, a failing probe, a new process
        #: that never came up); kept after it recovers, until a newer cause replaces it.
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.health = "-"
        #: Why the running process is not the one wanted (a restart, reload or config change
        #: whose new process failed); None when what runs is what was asked for.
        self.pending: str | None = None
        self.logs = LogBuffer(self.name)
        self.context = context
        self._proc: AppProcess | None = None
        self._processes: set[AppProcess] = set()
        self._lifecycle_task: asyncio.Task[None] | None = None
        self._rollover_task: asyncio.Task[bool] | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_stop: asyncio.Event | None = None
        self._op_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._reported_error: str | None = None
        self._stats = ProcessTreeStats()
        self.backoff = BackoffPolicy(self.opt("restart_delay"), self.opt("max_restart_count"))
        #: How health is judged, as shown to the user ("GET /health", "any answer < 500 ...").
        self.health_rule = self._rule_basis = self._initial_health_rule()

    # --- read-only views ------------------------------------------------------------------

    def opt(self, key: str) -> Any:
        """The effective value of an overridable key for this app."""
        return self.context.options.effective(self.config, key)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def port(self) -> int | None:
        return self._proc.port if self._proc else None

    @property
    def backend(self) -> str:
        """The backend of the live process, else the one the next process will use."""
        if self._proc is not None:
            return self._proc.backend
        try:
            return self.desired_backend()
        except GatewayError:
            return str(self.config.backend or self.context.default_backend)

    def desired_backend(self, config: AppConfig | None = None,
                        default_backend: str | None = None) -> str:
        """The backend a process for `config` runs on (GatewayError: not installed)."""
        config = config or self.config
        if config.command:
            return "command"
        return resolve_backend_name(
            config.backend or default_backend or self.context.default_backend)

    def upstream(self) -> tuple[str, int] | None:
        """Where traffic goes now; switches atomically during a rollover."""
        proc = self._proc
        if proc is None or self.state not in SERVING:
            return None
        return HOST, proc.port

    def lease(self) -> Lease | None:
        """Like `upstream`, but counts the request against the process until released."""
        proc = self._proc
        if proc is None or self.state not in SERVING:
            return None
        return Lease(proc)

    # --- admission: how a request gets a process ----------------------------------------

    async def admit(self, on_hold: Callable[[], None] | None = None) -> Lease | None:
        """A lease on the serving process, waiting up to `hold_requests` for one while the
        app starts or restarts (`on_hold` is called when the request has to wait); None when
        the app is stopped, failed, or not ready in time. Everything that sends requests to
        an app (the orchestration extension, forward auth) comes through here."""
        if self.state in SERVING:
            lease = self.lease()
            if lease is not None:
                return lease
        if self.state in PENDING or (self.state in SERVING and self.upstream() is None):
            if on_hold is not None:
                on_hold()
            if await self.wait_ready(float(self.opt("hold_requests"))):
                return self.lease()
        return None

    async def readmit(self, refused: Lease,
                      on_hold: Callable[[], None] | None = None) -> Lease | None:
        """A new lease for a request whose connection `refused`'s process refused (or
        closed unanswered), to send it once more when the resend rule allows.

        A process still in service that refuses is usually dying, its exit noticed a few ms
        later: wait up to `EXIT_GRACE` for it, so the request is held for the restart like
        any other (a process that does not exit, one worker of several dead, gets the new
        lease anyway). The caller still holds and releases `refused`."""
        process = refused.process
        if not process.exited and process is self._proc and self.state in SERVING:
            await process.wait_exit(EXIT_GRACE)
        return await self.admit(on_hold)

    async def wait_ready(self, timeout: float) -> bool:
        """True as soon as the app serves; False if it does not within `timeout` seconds,
        or is stopped or failed (nothing is coming)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.state in SERVING:
                return True
            if self.state in IDLE:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return self.state in SERVING

    def status(self) -> dict[str, Any]:
        cpu, rss = self._stats.sample(self.pid)
        up = round(time.time() - self.started_at, 1) if (
            self.started_at and self.state in SERVING) else 0.0
        return {
            "name": self.name, "path": self.config.path, "state": str(self.state),
            "pid": self.pid, "port": self.port, "backend": self.backend,
            "restarts": self.restarts, "uptime_s": up, "cpu_percent": cpu, "rss_bytes": rss,
            "health": self.health if self.state in SERVING else "-",
            "health_check": self.health_rule,
            "last_error": self.last_error, "last_error_at": self.last_error_at,
            "pending": self.pending,
        }

    def process_key(self, config: AppConfig | None = None, project: ProjectConfig | None = None,
                    default_backend: str | None = None) -> ChildSpec:
        """What a process for `config` is made from (default: what is configured now),
        but its port; a process whose key differs needs replacing."""
        return self.child_spec(0, config or self.config, strict=False, project=project,
                               default_backend=default_backend).without_port()

    def running_key(self) -> ChildSpec | None:
        """The key of the process that serves or is starting (None: no process)."""
        return self._proc.key if self._proc is not None else None

    def _initial_health_rule(self) -> str:
        if not self.opt("health_check_enabled"):
            return TCP_RULE
        if self.config.health_check_path is not None:
            return f"GET {self.config.health_check_path}"
        return f"GET {DEFAULT_HEALTH_PATH}, else any answer < 500"

    def _set_error(self, cause: str) -> str:
        """Record why the app failed (the one place causes are cleaned); returns it."""
        cause = printable(cause)
        if len(cause) > MAX_CAUSE:
            cause = cause[:MAX_CAUSE - 1] + "…"
        self.last_error = cause
        self.last_error_at = time.time()
        return cause

    # --- the one place that changes state -------------------------------------------------

    def _transition(self, new: AppState, reason: str = "") -> None:
        old = self.state
        reason = printable(reason)  # it may quote an app's output or an exception
        check_transition(self.name, old, new)
        self.state = new
        if new is AppState.HEALTHY and old is not AppState.HEALTHY:
            self.backoff.healthy()
            self.health = "ok"
        elif new in IDLE or new in PENDING:
            self.health = "-"
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        log.info("app %s: %s -> %s%s", self.name, old, new, f" ({reason})" if reason else "")
        self.context.events.emit(AppStateChanged(
            app=self.name, old=old, new=new, pid=self.pid, port=self.port,
            reason=reason, restarts=self.restarts))

    def _message(self, level: str, text: str, **extra: Any) -> None:
        self.context.events.emit(EngineMessage(level=level, text=printable(text),
                                              app=self.name, extra=extra))

    # --- operations -----------------------------------------------------------------------

    async def start(self, *, after: Callable[[], Awaitable[str | None]] | None = None) -> None:
        """Start a stopped or failed app (a no-op if it runs or is starting).

        `after` (the orchestrator's dependency check) is awaited before the first process
        is launched; the app is "starting" meanwhile, so requests wait for it. If it returns
        a reason, the app fails with that reason instead.
        """
        async with self._op_lock:
            if self.state not in IDLE:
                return
            self.backoff.reset()
            self._transition(AppState.STARTING,
                             "waiting for its dependencies" if after else "start requested")
            self._begin_lifecycle(after)
            self._ensure_watcher()

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop the app: SIGTERM its groups, SIGKILL after shutdown_timeout."""
        await self._cancel_rollover()
        async with self._op_lock:
            await self._cancel_lifecycle()
            if self.state is not AppState.STOPPED:
                self._transition(AppState.STOPPED, reason)
            await self._stop_processes()
            self.backoff.unhealthy()

    async def restart(self, reason: str = "restart requested") -> bool:
        """Replace the process; resets the failure streak. True when a new process took over.

        A serving app is rolled over (`rollover`): the new process must be healthy before
        the old one is drained, and if it fails the old one keeps serving and the restart
        stays pending. An app with a fixed `port` (two processes cannot share it), or one
        that is not serving, is stopped and started again.
        """
        await self._cancel_rollover()
        if self.state in SERVING and self.config.port is None:
            rolled = await self.rollover(reason, counts=True)
            if rolled:
                self.backoff.reset()
            self._ensure_watcher()
            return rolled
        async with self._op_lock:
            self.backoff.reset()
            await self._restart_locked(reason)
            self._ensure_watcher()
        return True

    async def rollover(self, reason: str, *, counts: bool = False) -> bool:
        """Blue/green: start a new process, move traffic once it is healthy, drain the old.

        If the new process does not become healthy it is killed and the old one keeps
        serving. An app that is starting or restarting is restarted at once, and so is one
        with a fixed `port` (two processes cannot share it); stopped and failed apps are
        left alone. Returns True when a new process took over or was started. `counts`: the
        rollover is a restart the user asked for, counted in `restarts`.
        """
        async with self._op_lock:
            if self.state in IDLE:
                return False
            if self.state in PENDING or self._proc is None or self.config.port is not None:
                await self._restart_locked(reason)
                return True
            task = asyncio.create_task(self._blue_green(reason, counts),
                                       name=f"rollover-{self.name}")
            self._rollover_task = task
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and not (current and current.cancelling()):
                    return False  # a stop cancelled the rollover, not our caller
                raise
            finally:
                self._rollover_task = None

    async def _restart_locked(self, reason: str) -> None:
        await self._cancel_lifecycle()
        if self.state in IDLE:
            self._transition(AppState.STARTING, reason)
        elif self.state is not AppState.RESTARTING:
            self.restarts += 1
            self._transition(AppState.RESTARTING, reason)
        await self._stop_processes()
        self._begin_lifecycle()

    async def reconfigure(self, config: AppConfig, *, roll: bool) -> bool:
        """Take a changed configuration (the orchestrator's plan says whether it needs a
        new process: `roll`); True if a new process took over or was started.

        A failed app whose process changed is started again (the change may be its fix);
        a stopped app stays stopped.
        """
        watch_changed = (config.reload, config.watch, config.module_path) != (
            self.config.reload, self.config.watch, self.config.module_path)
        self.config = config
        self.backoff.base_delay = self.opt("restart_delay")
        self.backoff.max_restarts = self.opt("max_restart_count")
        if self._initial_health_rule() != self._rule_basis:
            self.health_rule = self._rule_basis = self._initial_health_rule()
        if watch_changed:
            await self.stop_watcher()
            if self.state not in IDLE:
                self._ensure_watcher()
        if not roll or self.state is AppState.STOPPED:
            return False
        if self.state is AppState.FAILED:
            await self.start()
            return True
        return await self.rollover("configuration changed")

    async def close(self) -> None:
        """Stop everything, watcher included (the app is removed or the engine stops)."""
        await self.stop_watcher()
        await self.stop("workbench stopping")
        for task in list(self._drains):
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)

    # --- lifecycle ------------------------------------------------------------------------

    def _begin_lifecycle(self, after: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self._lifecycle_task = asyncio.create_task(self._lifecycle(after),
                                                   name=f"app-{self.name}")

    async def _cancel_lifecycle(self) -> None:
        task, self._lifecycle_task = self._lifecycle_task, None
        await _cancel_and_wait(task)

    async def _cancel_rollover(self) -> None:
        task = self._rollover_task
        if task is not asyncio.current_task():
            await _cancel_and_wait(task)

    async def _stop_processes(self) -> None:
        self._proc = None
        self.pending = None  # the next process is made from what is wanted now
        timeout = self.opt("shutdown_timeout")
        await asyncio.gather(*(p.terminate(timeout) for p in list(self._processes)))

    async def _lifecycle(self, after: Callable[[], Awaitable[str | None]] | None = None) -> None:
        try:
            problem = await after() if after is not None else None
            if problem:
                self._set_error(problem)
                self._transition(AppState.FAILED, problem)
                self._message("error", f"app {self.name!r} not started: {problem}")
                return
            while True:
                if self.state is not AppState.STARTING:
                    self._transition(AppState.STARTING, "starting a new process")
                reason = self._set_error(await self._run_once())
                delay = self.backoff.failure()
                if delay is None:
                    self._transition(AppState.FAILED, reason)
                    self._message("error", f"app {self.name!r} gave up after "
                                           f"{self.backoff.max_restarts} restarts: {reason}")
                    await self._stop_processes()
                    return
                self.restarts += 1
                self._transition(AppState.RESTARTING, f"{reason}; next try in {delay:.2f}s")
                began = asyncio.get_running_loop().time()
                await self._stop_processes()
                spent = asyncio.get_running_loop().time() - began
                await asyncio.sleep(max(0.0, delay - spent))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave a zombie state behind
            log.exception("app %s: lifecycle failed", self.name)
            cause = self._set_error(f"internal error: {exc}")
            with contextlib.suppress(Exception):
                if self.state in SERVING:
                    self._transition(AppState.RESTARTING, cause)
                if self.state is not AppState.FAILED:
                    self._transition(AppState.FAILED, cause)
            await self._stop_processes()

    async def _run_once(self) -> str:
        """Run one process until it fails; the reason it failed."""
        try:
            proc = await self._launch()
        except (GatewayError, OSError) as exc:
            self._report(str(exc))
            return str(exc)
        self._set_live(proc)
        ok, reason = await self._wait_healthy(proc)
        if not ok:
            self._report(reason)
            return reason
        self.started_at = time.time()
        self._reported_error = None
        self._transition(AppState.HEALTHY, f"pid {proc.pid} on port {proc.port}")
        return await self._monitor()

    def _report(self, reason: str) -> None:
        """Tell the user why a process did not come up, once per distinct cause."""
        if reason != self._reported_error:
            self._reported_error = reason
            self._message("error", f"app {self.name!r} did not start: {reason}")

    async def _launch(self) -> AppProcess:
        port = self.context.ports.allocate(self.name, self.config.port)
        spec = self.child_spec(port, self.config)
        try:
            proc = await spawn(spec, on_line=self._on_line, on_exit=self._on_exit)
        except BaseException:
            self.context.ports.release(port)
            raise
        self._processes.add(proc)
        log.info("app %s: spawned pid %s on port %s (%s)", self.name, proc.pid, port,
                 proc.backend)
        return proc

    def child_spec(self, port: int, config: AppConfig, *, strict: bool = True,
                   project: ProjectConfig | None = None,
                   default_backend: str | None = None) -> ChildSpec:
        """What a process for `config` on `port` is made from; `strict` raises
        (GatewayError) if its backend is not installed. `project` and `default_backend`
        default to the current context's."""
        project = project or self.context.project
        root = str(project.root.resolve())
        module_path = (str(project.resolve(config.module_path).resolve())
                       if config.module_path else None)
        server = project.server
        try:
            backend = self.desired_backend(config, default_backend)
        except GatewayError:
            if strict:
                raise
            backend = str(config.backend or default_backend or self.context.default_backend)
        return ChildSpec(
            app=config.name, app_path=config.app_path, app_type=config.app_type,
            factory=config.factory, factory_args=dict(config.factory_args),
            module_path=module_path, sys_path=(root,),
            command=tuple(config.command) if config.command else None,
            env=dict(config.env), workers=config.workers, backend=backend,
            host=HOST, port=port, cwd=root, prefix=config.prefix,
            server=ServerSettings(event_loop=str(server.event_loop), http=server.http,
                                  backlog=server.backlog,
                                  keep_alive_timeout=server.keep_alive_timeout,
                                  graceful_timeout=server.graceful_timeout))

    def _set_live(self, proc: AppProcess) -> None:
        self._proc = proc
        self.pending = None

    def _on_line(self, proc: AppProcess, stream: str, text: str, rid: str | None) -> None:
        now = time.time()
        self.logs.append(LogLine(now, self.name, stream, text, rid))
        self.context.events.emit(AppOutput(self.name, stream, text, rid, now))

    def _on_exit(self, proc: AppProcess) -> None:
        self._processes.discard(proc)
        self.context.ports.release(proc.port)
        if proc is self._proc:
            self._wakeup.set()

    async def _probe(self, proc: AppProcess, timeout: float) -> tuple[bool, str]:
        checker = self.context.health
        result: ProbeResult
        if self.opt("health_check_enabled"):
            result = await checker.http(HOST, proc.port, self.config.health_check_path,
                                        timeout)
        else:
            result = await checker.tcp(HOST, proc.port, timeout)
        if result.ok and result.rule != self.health_rule:
            self._judged_by(result)
        if self.context.options.logging.health_check_logs:
            health_log.info("app %s pid %s: health %s (%s)", self.name, proc.pid,
                            "ok" if result.ok else "failing", result.detail)
        return result.ok, result.detail

    def _judged_by(self, result: ProbeResult) -> None:
        """A good probe judged by another rule than before: show it, and say so once when
        the app turns out to have no health route."""
        if result.lenient and self.health_rule != result.rule:
            self._message("info", f"app {self.name!r}: {result.detail}; health is judged by "
                                  f"{result.rule} (set health_check_path to probe a real "
                                  "health route)")
        self.health_rule = result.rule

    async def _wait_healthy(self, proc: AppProcess) -> tuple[bool, str]:
        """Probe quickly until the first good answer, the process exits, or time runs out."""
        loop = asyncio.get_running_loop()
        limit = self.context.start_timeout
        deadline = loop.time() + limit
        detail = "no answer yet"
        timeout = min(float(self.opt("health_check_timeout")), 2.0)
        while True:
            if proc.exited:
                await proc.wait()
                return False, proc.describe_exit()
            ok, detail = await self._probe(proc, timeout)
            if ok:
                return True, ""
            if loop.time() >= deadline:
                return False, f"not healthy within {limit:g}s ({detail})"
            await proc.wait_exit(START_PROBE_INTERVAL)

    async def _monitor(self) -> str:
        """Watch the live process until it exits or fails its health checks; the reason."""
        failures = 0
        while True:
            proc = self._proc
            if proc is None:
                return "process went away"
            if proc.exited:
                await proc.wait()
                if proc is self._proc:
                    return proc.describe_exit()
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(float(self.opt("health_check_interval"))):
                    await self._wakeup.wait()
                    continue  # exited or swapped: look again before probing
            if proc is not self._proc or proc.exited:
                continue
            if not self.opt("health_check_enabled"):
                continue  # the process exit is what we watch
            ok, detail = await self._probe(proc, float(self.opt("health_check_timeout")))
            if proc is not self._proc or proc.exited:
                continue
            if ok:
                failures = 0
                self.health = "ok"
                if self.state is AppState.UNHEALTHY:
                    self._transition(AppState.HEALTHY, "health check passed")
                continue
            failures += 1
            self.health = "failing"
            self._set_error(detail)  # "GET /health -> 500": a probe, and what it got
            retries = int(self.opt("health_check_retries"))
            if self.state is AppState.HEALTHY:
                self._transition(AppState.UNHEALTHY, f"health check failed: {detail}")
            if failures >= retries:
                return f"{failures} health checks failed in a row: {detail}"

    # --- blue/green -----------------------------------------------------------------------

    async def _blue_green(self, reason: str, counts: bool = False) -> bool:
        old = self._proc
        try:
            new = await self._launch()
        except (GatewayError, OSError) as exc:
            self._not_taken(reason, self._set_error(f"cannot start a new process: {exc}"))
            return False
        try:
            ok, why = await self._wait_healthy(new)
        except BaseException:
            await new.terminate(0.5)
            raise
        if not ok:
            await new.terminate(float(self.opt("shutdown_timeout")))
            self._not_taken(reason, self._set_error(why))
            return False
        if self.state not in SERVING or old is not self._proc:
            # The old process went away meanwhile: the app's own restart is under way, from
            # the configuration wanted now, so nothing stays pending.
            await new.terminate(float(self.opt("shutdown_timeout")))
            self._message("warning", f"app {self.name!r}: {reason}, but the app went "
                                     f"{self.state} meanwhile; it is restarted as configured")
            return False
        self._set_live(new)
        self.started_at = time.time()
        self.restarts += counts
        self._wakeup.set()
        self._transition(AppState.HEALTHY, f"{reason}: now pid {new.pid} on port {new.port}")
        if old is not None:
            drain = asyncio.create_task(self._drain(old), name=f"drain-{self.name}-{old.pid}")
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return True

    def _not_taken(self, reason: str, cause: str) -> None:
        """A new process did not replace the old one: the change stays pending."""
        self.pending = reason
        self._message("warning", f"app {self.name!r}: {reason}, but the new process failed "
                                 f"({cause}); the old one keeps serving and the change "
                                 "stays pending until the next restart, reload or save")

    async def _drain(self, proc: AppProcess) -> None:
        """Let in-flight requests on a replaced process finish, then stop it."""
        await proc.drained(float(self.context.project.server.graceful_timeout))
        await proc.terminate(float(self.opt("shutdown_timeout")))

    # --- file watching --------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._watch_task is not None and not self._watch_task.done():
            return
        spec = WatchSpec(self.config, self.context.project)
        if not spec:
            return
        self._watch_stop = asyncio.Event()
        self._watch_task = asyncio.create_task(
            watch_files(spec, self._files_changed, self._watch_stop),
            name=f"watch-{self.name}")

    async def stop_watcher(self) -> None:
        task, self._watch_task = self._watch_task, None
        if self._watch_stop is not None:
            self._watch_stop.set()
        if task is not None:
            try:
                async with asyncio.timeout(2.0):
                    await task
            except (TimeoutError, asyncio.CancelledError, Exception):
                task.cancel()

    async def _files_changed(self, paths: list[str]) -> None:
        shown = ", ".join(paths[:3]) + (" ..." if len(paths) > 3 else "")
        if self.state is AppState.STOPPED:
            return
        self._message("info", f"app {self.name!r}: {shown} changed; reloading")
        if self.state is AppState.FAILED:
            await self.start()
        elif self.state in PENDING:
            await self.restart("files changed")
        else:
            await self.rollover("files changed")

    def __repr__(self) -> str:
        return (f"<AppSupervisor {self.name!r} {self.state} pid={self.pid} port={self.port} "
                f"backend={self.backend} restarts={self.restarts} "
                f"streak={self.backoff.streak}"
                + (f" pending={self.pending!r}" if self.pending else "") + ">")


async def _cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait for it; our own cancellation still propagates."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


def unknown_app(name: str, known: list[str]) -> AppError:
    listing = ", ".join(repr(n) for n in known) or "none"
    return AppError(f"no app named {name!r} (apps: {listing})")
