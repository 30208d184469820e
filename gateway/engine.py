"""The engine: one object that owns the gateway, the orchestrator and the control channel.

The TUI and headless mode both drive an `Engine`; it never knows which one does. Commands
are coroutines on the engine's loop; what happens is told through `events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.builtin import metrics_snapshot
from gateway.config.loader import load_config, validate_text
from gateway.config.schema import ProjectConfig
from gateway.config.writer import set_value, write_atomic
from gateway.errors import AppError, ConfigError
from gateway.events import (
    BackendChanged,
    ConfigRejected,
    ConfigReloaded,
    EngineMessage,
    EventBus,
)
from gateway.export import export_requests
from gateway.metrics import MetricsRegistry
from gateway.pipeline import GatewayApp, Pipeline
from gateway.requestlog import RequestLog, decode_record
from gateway.servers.registry import Backend, BackendRegistry
from gateway.services import Services
from gateway.snapshots import MetricsSnapshot, Trace

if TYPE_CHECKING:
    from gateway.orchestrator import Orchestrator
    from gateway.orchestrator.logs import LogLine

log = logging.getLogger("pyserve.engine")


class Engine:
    """Runs one project file: serve, supervise, watch, answer control commands."""

    def __init__(self, config_path: str | Path, *, overrides: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None, watch_config: bool = True,
                 control: bool = True, project: ProjectConfig | None = None) -> None:
        """`project`: the file already validated (the command line does, to exit 2 before
        anything starts); without it `start` reads and validates the file."""
        self.given_path = Path(config_path)  # error messages name the file as the user did
        self.config_path = self.given_path.resolve()
        self.overrides = dict(overrides or {})
        self.environ = environ
        self.events = EventBus()
        self.project: ProjectConfig | None = None
        self._validated = project
        self.services: Services | None = None
        self.gateway: GatewayApp | None = None
        self.orchestrator: Orchestrator | None = None
        self.request_log = RequestLog(self.events)
        self.metrics_registry = MetricsRegistry()
        self.started_at = 0.0
        self._server: Any = None
        self._control: Any = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_config = watch_config
        self._with_control = control
        self._applied_text = ""  # the last text the watcher dealt with (applied or refused)
        self._running_text = ""  # the text of the configuration that runs
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._app_backend: Backend | None = None  # what apps that inherit the backend run on

    # --- lifecycle ------------------------------------------------------------------------

    def load(self) -> ProjectConfig:
        project = self._validated or load_config(self.given_path, overrides=self.overrides,
                                                 environ=self.environ)
        self._validated = None
        self._applied_text = self._running_text = project.text
        return project

    async def start(self) -> None:
        from gateway.proxy.headers import Forwarding
        from gateway.proxy.transport import PooledTransport
        from gateway.servers.switch import GatewayServer

        project = self.project = self.load()
        backend = BackendRegistry.resolve_gateway(project.server.backend, project.server)
        app_backend = self._app_backend = BackendRegistry.resolve(project.server.backend)
        self.request_log.resize(project.logging.request_log_size)
        forwarding = Forwarding(project.trusted_proxies)
        self.services = Services(
            project=project, events=self.events, metrics=self.metrics_registry,
            request_log=self.request_log, transport=PooledTransport(forwarding=forwarding),
            backend=lambda: self.backend, app_backend=lambda: self.app_backend,
            forwarding=forwarding,
        )
        if project.orchestration is not None:
            self._make_orchestrator(project, app_backend)
        pipeline = Pipeline(project.extensions, self.services)
        self.gateway = GatewayApp(pipeline, self.services)
        await pipeline.startup()
        self._server = GatewayServer()
        try:
            await self._server.start(self.gateway, backend, project.server)
        except BaseException:
            await pipeline.shutdown()
            raise
        self.started_at = time.monotonic()
        self.request_log.start()
        if self._with_control:
            from gateway.control import ControlServer

            self._control = ControlServer(self)
            await self._control.start()
        if self.orchestrator is not None:
            await self.orchestrator.start()
        if self._watch_config:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        host, port = self.address
        self.events.emit(EngineMessage(
            "info", f"gateway on http://{host}:{port} ({backend}; apps on {app_backend})"))
        from gateway.extensions.auth import order_warnings

        for warning in order_warnings(project):
            self.events.emit(EngineMessage("warning", warning))
        settle_heap()

    async def stop(self) -> None:
        """Drain in-flight requests, stop every app, close the control channel."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._watch_task is not None:
                self._watch_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watch_task
            if self._control is not None:
                await self._control.stop()
            timeout = self.project.server.graceful_timeout if self.project else 5.0
            if self._server is not None:
                await self._server.stop(timeout)
            if self.orchestrator is not None:
                await self.orchestrator.stop()
            if self.gateway is not None:
                await self.gateway.pipeline.shutdown()
            if self.services is not None:
                await self.services.transport.aclose()
            await self.request_log.stop()
        finally:
            self._stopped.set()

    # --- state ----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """What serves the gateway (`builtin`, `granian`...)."""
        return self._server.backend if self._server is not None else "none"

    @property
    def app_backend(self) -> str:
        """What an app that inherits `server.backend` runs on."""
        return str(self._app_backend) if self._app_backend is not None else "none"

    @property
    def address(self) -> tuple[str, int]:
        if self._server is not None:
            return self._server.address
        assert self.project is not None
        return (self.project.server.host, self.project.server.port)

    def installed_backends(self) -> list[str]:
        return BackendRegistry.gateway_choices()

    def metrics(self) -> MetricsSnapshot:
        assert self.gateway is not None
        return metrics_snapshot(self.gateway)

    def app_logs(self, name: str | None = None) -> list[LogLine]:
        if self.orchestrator is None:
            return []
        return list(self.orchestrator.logs(name))

    def trace(self, request_id: str) -> Trace | None:
        record = self.request_log.find(request_id)
        if record is None:
            return None
        lines = [ln for ln in self.app_logs(record.app) if ln.request_id == request_id] \
            if record.app and self.orchestrator and record.app in self.orchestrator.supervisors \
            else []
        return Trace(record, tuple(lines))

    async def export_requests(self, path: str | Path, fmt: str = "jsonl", *,
                              include_credentials: bool = False) -> int:
        """Write every kept request with its app lines; the number written. Credentials are
        masked unless `include_credentials`.

        What to write is copied here, on the loop, where nothing appends meanwhile (cheap:
        the requests stay in their compact form); decoding and writing run in a thread so
        thousands of traces do not stall the gateway.
        """
        kept = self.request_log.encoded()
        lines = self.app_logs(None)
        return await asyncio.to_thread(
            lambda: export_requests([decode_record(b) for b in kept], lines, Path(path), fmt,
                                    include_credentials=include_credentials))

    # --- commands -------------------------------------------------------------------------

    def _make_orchestrator(self, project: ProjectConfig, backend: Backend) -> Orchestrator:
        """The engine's orchestrator, made when the first configuration with apps runs."""
        from gateway.orchestrator import Orchestrator

        assert self.services is not None
        orchestrator = Orchestrator.for_project(project, events=self.events, backend=backend)
        self.orchestrator = self.services.orchestrator = orchestrator
        return orchestrator

    def _orch(self) -> Orchestrator:
        if self.orchestrator is None:
            raise AppError("this project runs no apps (no process_orchestration extension)")
        return self.orchestrator

    async def restart_app(self, name: str) -> bool:
        """False when the app's new process failed and the old one serves on."""
        return bool(await self._orch().restart_app(name))

    async def stop_app(self, name: str) -> None:
        await self._orch().stop_app(name)

    async def start_app(self, name: str) -> None:
        await self._orch().start_app(name)

    async def switch_backend(self, name: str, *, persist: bool = True) -> None:
        """Re-serve the gateway and roll inheriting apps over to `name`; write it back."""
        async with self._lock:
            old, new = await self._roll_backend(name)
            if persist:
                await self._write_backend_back(name)
            self.events.emit(BackendChanged(old, new))

    async def _roll_backend(self, name: str) -> tuple[str, str]:
        """Re-serve the gateway on what `name` means for it, then roll the apps that inherit
        the backend onto what it means for them; (old, new) gateway backends."""
        old = self.backend
        new = BackendRegistry.resolve_gateway(name, self._server.settings)
        app_backend = BackendRegistry.resolve(name)
        await self._server.switch(new)
        self._app_backend = app_backend
        if self.orchestrator is not None:
            await self.orchestrator.switch_backend(app_backend)
        return old, str(new)

    async def _write_backend_back(self, name: str) -> None:
        """Write `server.backend = name` into the project file, if it holds what runs.

        A file that differs from the running configuration is being edited: saved invalid
        and refused, half-written, or saved and not applied yet. Rewriting it (read, edit,
        rename over it) could drop what the editor writes meanwhile, or mark an edit as
        applied that never was; the user's file wins and is left alone.
        """
        try:
            current = await asyncio.to_thread(self.config_path.read_text, encoding="utf-8")
            if current == self._running_text:
                text = await asyncio.to_thread(set_value, self.config_path,
                                               ["server", "backend"], name)
                project = validate_text(self.given_path, text,
                                        overrides=self._overrides_without_backend(),
                                        environ=self.environ)
                self._applied_text = self._running_text = text
                self.project = project
                return
            why = "it has changes that are not applied (an edit under way?)"
        except (OSError, ValueError, ConfigError) as exc:  # tomlkit's errors are ValueErrors
            why = f"it could not be updated: {exc}"
        self.events.emit(EngineMessage(
            "warning", f"backend {name!r} is serving, but {self.given_path.name} was left as "
                       f"it is: {why}; its own server.backend applies with its next change"))

    def _overrides_without_backend(self) -> dict[str, Any]:
        return {k: v for k, v in self.overrides.items() if k != "backend"}

    def validate_text(self, text: str) -> ProjectConfig:
        return validate_text(self.given_path, text, overrides=self.overrides,
                             environ=self.environ)

    def preview_text(self, text: str) -> ConfigReloaded:
        """What saving `text` would do to the apps: the orchestrator's own plan."""
        new = self.validate_text(text)
        if self.orchestrator is None:  # saving it creates the orchestrator: all apps start
            return ConfigReloaded(added=tuple(a.name for a in new.apps))
        from gateway.config.schema import OrchestrationOptions

        plan = self.orchestrator.plan(new.orchestration or OrchestrationOptions(), new)
        return ConfigReloaded(plan.added, plan.removed, plan.changed, restarted=plan.roll)

    async def apply_text(self, text: str) -> ConfigReloaded:
        """Validate `text`, write it atomically, apply it. Invalid: nothing written."""
        new = self.validate_text(text)
        await asyncio.to_thread(write_atomic, self.config_path, text)
        return await self._apply(new)

    async def reload(self) -> ConfigReloaded:
        """Re-read the project file; an invalid one is refused and the running one stays."""
        try:
            text = await asyncio.to_thread(self._read_project_text)
            new = self.validate_text(text)
        except ConfigError as exc:
            self.events.emit(ConfigRejected(str(exc)))
            raise
        return await self._apply(new)

    def _read_project_text(self) -> str:
        """The project file's text; ConfigError if it is not UTF-8 (as `load_config` says)."""
        try:
            return self.config_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read: {exc}", path=str(self.given_path)) from None

    async def _apply(self, new: ProjectConfig) -> ConfigReloaded:
        async with self._lock:
            assert self.project is not None and self.services is not None
            assert self.gateway is not None
            old = self.project
            self._applied_text = self._running_text = new.text
            added: tuple[str, ...] = ()
            removed: tuple[str, ...] = ()
            changed: tuple[str, ...] = ()
            pending: tuple[str, ...] = ()
            restarted: tuple[str, ...] = ()
            if new.orchestration is not None and self.orchestrator is None:
                assert self._app_backend is not None
                await self._make_orchestrator(new, self._app_backend).start()
                added = tuple(a.name for a in new.apps)
            elif self.orchestrator is not None:
                from gateway.config.schema import OrchestrationOptions

                options = new.orchestration or OrchestrationOptions()
                plan = await self.orchestrator.apply(options, new)
                added, removed, changed = plan.added, plan.removed, plan.changed
                restarted = plan.roll
                pending = tuple(n for n in self.orchestrator.pending() if n in plan.roll)
                # Else /metrics (and the status table) would list a removed app for ever,
                # as "mounted", from the counters of the requests it once served.
                self.metrics_registry.forget(removed)
            self.services.project = new
            self.services.forwarding.update(new.trusted_proxies)
            self.project = new
            self.request_log.resize(new.logging.request_log_size)
            pipeline = Pipeline(new.extensions, self.services)
            await pipeline.startup()
            previous, self.gateway.pipeline = self.gateway.pipeline, pipeline
            await previous.shutdown()
            if (old.server.host, old.server.port) != (new.server.host, new.server.port):
                self.events.emit(EngineMessage(
                    "warning", "the gateway address changed: restart pyserve-tui to apply it"))
            name = new.server.backend
            if "backend" not in self.overrides and (
                    BackendRegistry.resolve_gateway(name, self._server.settings) != self.backend
                    or BackendRegistry.resolve(name) != self._app_backend):
                self.events.emit(BackendChanged(*await self._roll_backend(name)))
            event = ConfigReloaded(added, removed, changed, pending, restarted)
            self.events.emit(event)
            settle_heap()
            return event

    async def _watch(self) -> None:
        """Apply saved edits of the project file; refuse invalid ones, keep running."""
        import watchfiles

        folder = self.config_path.parent
        async for changes in watchfiles.awatch(folder, debounce=200, step=50,
                                               recursive=False):
            if not any(Path(p).name == self.config_path.name for _, p in changes):
                continue
            try:
                text = await asyncio.to_thread(self._read_project_text)
            except OSError:
                continue  # e.g. gone for a moment while an editor renames its save into place
            except ConfigError as exc:  # not UTF-8: refused like any invalid file
                self.events.emit(ConfigRejected(str(exc)))
                log.warning("refused the edited project file: %s", exc)
                continue
            if text == self._applied_text and not (
                    self.orchestrator is not None and self.orchestrator.pending()):
                continue  # a save that changes nothing, unless it retries a pending change
            if not text.strip():
                # Saving in place truncates the file before writing it: an empty project
                # file is a save in progress (its end brings another change), not a wish
                # to stop every app and drop every route.
                self.events.emit(EngineMessage(
                    "warning", f"{self.given_path.name} is empty; the running configuration "
                               "is kept until it has content"))
                continue
            try:
                await self.reload()
            except ConfigError as exc:
                self._applied_text = text
                log.warning("refused the edited project file: %s", exc)
            except Exception as exc:  # keep watching whatever one apply did
                log.exception("applying the edited project file failed")
                self.events.emit(EngineMessage("error", f"applying the edit failed: {exc}"))

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else ("running" if self.started_at else "new")
        return f"<Engine {self.config_path.name} {state} backend={self.backend}>"


#: The garbage collector's first-generation threshold once the gateway serves.
GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Move everything alive now out of the garbage collector's sight.

    Start-up builds tens of thousands of long-lived objects (modules, the pipeline, server
    internals). Left in the oldest generation, every full collection walks them all, several
    times a second under load, which shows in the gateway's tail latency and throughput
    (bench/README.md has the measurement).
    """
    gc.collect()
    gc.freeze()
    # Young objects are collected every GEN0_THRESHOLD allocations net instead of CPython's
    # 700: under load a request's short-lived containers would otherwise set off a young
    # collection every few dozen requests, each walking everything in flight (about 6 % of
    # the compiled request path's CPU; bench/README.md).
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
