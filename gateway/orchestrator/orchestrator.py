"""The set of app processes: start/stop in dependency order, live config, routing by path."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gateway.config.schema import OrchestrationOptions, ProjectConfig
from gateway.events import EventBus
from gateway.orchestrator.health import HealthChecker
from gateway.orchestrator.lease import Routes, resolve
from gateway.orchestrator.logs import LogLine, merge_by_time
from gateway.orchestrator.ports import PortAllocator
from gateway.orchestrator.states import IDLE, SERVING
from gateway.orchestrator.supervisor import AppContext, AppSupervisor, unknown_app
from gateway.servers import Backend, resolve_backend_name

log = logging.getLogger("pyserve.orchestrator")


@dataclass(frozen=True, slots=True)
class Plan:
    """What taking a new configuration means, app by app (names in config order).

    `Orchestrator.plan` makes it; the editor's preview shows it and `Orchestrator.apply`
    carries it out, so what is previewed is what happens.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: Apps that get a new process: what it is made of changed, or an earlier change is
    #: still pending (its new process failed; taking the file again retries it).
    roll: tuple[str, ...] = ()
    #: Apps whose settings changed but whose process stays (routing, health, timeouts).
    in_place: tuple[str, ...] = ()
    #: `roll` and `in_place` together, in config order.
    changed: tuple[str, ...] = ()


class Orchestrator:
    """Runs every app of `options.apps` as a supervised process group.

    The engine owns one instance for its whole life (it survives pipeline rebuilds);
    `apply` takes a new configuration without touching apps whose process is unchanged.
    """

    def __init__(self, options: OrchestrationOptions, *, project: ProjectConfig,
                 events: EventBus, default_backend: Backend | str) -> None:
        self.events = events
        self.ports = PortAllocator(options.port_range)
        self.health = HealthChecker()
        #: What every supervisor is told (`_share` replaces it); the attributes below read it.
        self._context = AppContext(
            project=project, options=options,
            default_backend=resolve_backend_name(default_backend), start_timeout=60.0,
            events=events, ports=self.ports, health=self.health)
        self.supervisors: dict[str, AppSupervisor] = {
            app.name: AppSupervisor(app, self._context) for app in options.apps}
        #: Which app a path is for (`lease.resolve`); replaced whole when apps change.
        self.routes: Routes = []
        self._rebuild_routes()
        self._apply_logging()

    @classmethod
    def for_project(cls, project: ProjectConfig, *, events: EventBus,
                    backend: Backend | None = None) -> Orchestrator:
        """The orchestrator of `project`'s apps: the one way the engine and the extension
        make one. `backend` is what serves the gateway now (apps inherit it); without it,
        the project's `server.backend`."""
        return cls(project.orchestration or OrchestrationOptions(), project=project,
                   events=events,
                   default_backend=backend or resolve_backend_name(project.server.backend))

    # --- what the supervisors share ------------------------------------------------------

    @property
    def options(self) -> OrchestrationOptions:
        return self._context.options

    @property
    def project(self) -> ProjectConfig:
        return self._context.project

    @property
    def default_backend(self) -> str:
        return self._context.default_backend

    @property
    def start_timeout(self) -> float:
        """Seconds a new process has to answer its first health check."""
        return self._context.start_timeout

    @start_timeout.setter
    def start_timeout(self, seconds: float) -> None:
        self._share(replace(self._context, start_timeout=seconds))

    def _share(self, context: AppContext) -> None:
        """Change what the supervisors share, and tell every one of them."""
        self._context = context
        for sup in self.supervisors.values():
            sup.context = self._context

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every app; an app launches once the apps it depends on are healthy.

        Returns at once: every app is "starting" (requests for it wait up to
        `hold_requests`), and one whose dependency fails goes to "failed" saying which.
        """
        await self._start_group(list(self.supervisors))

    async def stop(self) -> None:
        """Stop every app, dependents before their dependencies; leaves no process."""
        await self._stop_group(list(self.supervisors))
        await self.health.aclose()

    def plan(self, options: OrchestrationOptions, project: ProjectConfig) -> Plan:
        """What taking `options` (of `project`) would do; changes nothing.

        An app rolls over to a new process when the process the new configuration
        describes differs from the one that runs (or, with none running, when its
        configuration changed), or when an earlier change is still pending.
        """
        new = {a.name: a for a in options.apps}
        roll: list[str] = []
        in_place: list[str] = []
        for name, config in new.items():
            sup = self.supervisors.get(name)
            if sup is None:
                continue
            running = sup.running_key()
            if running is not None:
                wanted = sup.process_key(config, project, self.default_backend)
                needs_new = wanted != running or sup.pending is not None
            else:
                needs_new = config != sup.config
            if needs_new:
                roll.append(name)
            elif config != sup.config:
                in_place.append(name)
        return Plan(added=tuple(n for n in new if n not in self.supervisors),
                    removed=tuple(n for n in self.supervisors if n not in new),
                    roll=tuple(roll), in_place=tuple(in_place),
                    changed=tuple(n for n in new if n in roll or n in in_place))

    async def apply(self, options: OrchestrationOptions, project: ProjectConfig) -> Plan:
        """Take a new configuration, as `plan` describes it; returns that plan.

        Added apps start, removed apps stop, apps to roll get a new process (blue/green:
        if it fails the old one keeps serving and the change stays pending), in-place
        changes are taken as they are. Untouched apps keep their process.
        """
        plan = self.plan(options, project)
        new = {a.name: a for a in options.apps}
        await self._stop_group(list(plan.removed))
        for name in plan.removed:
            self.supervisors.pop(name, None)

        self._share(replace(self._context, options=options, project=project))
        self.ports.set_range(options.port_range)
        self._apply_logging()

        await asyncio.gather(*(self.supervisors[n].reconfigure(new[n], roll=n in plan.roll)
                               for n in plan.changed))

        for name in plan.added:
            self.supervisors[name] = AppSupervisor(new[name], self._context)
        self.supervisors = {n: self.supervisors[n] for n in new}
        self._rebuild_routes()
        await self._start_group(list(plan.added))
        return plan

    def pending(self) -> list[str]:
        """Apps whose running process is not the one wanted (its replacement failed)."""
        return [n for n, s in self.supervisors.items() if s.pending]

    async def restart_app(self, name: str) -> bool:
        """Restart one app; False when its new process failed and the old one serves on."""
        return await self.get(name).restart()

    async def stop_app(self, name: str) -> None:
        await self.get(name).stop()

    async def start_app(self, name: str) -> None:
        await self.get(name).start()

    async def switch_backend(self, backend: Backend | str) -> list[str]:
        """Roll every app that inherits the backend over to `backend`; the names rolled."""
        resolved = resolve_backend_name(backend)
        self._share(replace(self._context, default_backend=resolved))
        candidates = [s for s in self.supervisors.values()
                      if s.config.backend is None and not s.config.command
                      and s.backend != resolved]
        results = await asyncio.gather(
            *(s.rollover(f"backend switched to {resolved}") for s in candidates))
        return [s.name for s, ok in zip(candidates, results, strict=True) if ok]

    # --- queries --------------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[AppSupervisor, str] | None:
        """The app whose `path` is the longest prefix of `path` at a segment boundary,
        with the path to send upstream (the prefix removed when `strip_path`)."""
        return resolve(self.routes, path)

    def get(self, name: str) -> AppSupervisor:
        sup = self.supervisors.get(name)
        if sup is None:
            raise unknown_app(name, list(self.supervisors))
        return sup

    def snapshot(self) -> list[dict]:
        return [sup.status() for sup in self.supervisors.values()]

    def logs(self, name: str | None = None) -> list[LogLine]:
        if name is not None:
            return self.get(name).logs.lines()
        return merge_by_time(s.logs for s in self.supervisors.values())

    # --- helpers --------------------------------------------------------------------------

    def _rebuild_routes(self) -> None:
        routes: Routes = []
        for sup in self.supervisors.values():
            prefix = sup.config.path.rstrip("/") or "/"
            routes.append((prefix, prefix + "/", sup))
        routes.sort(key=lambda r: len(r[0]) if r[0] != "/" else 0, reverse=True)
        self.routes = routes

    def _apply_logging(self) -> None:
        level = self.options.logging.httpx_level.upper()
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(level)

    def _order(self, names: Iterable[str]) -> list[str]:
        """`names` with dependencies before dependents (config order otherwise)."""
        wanted = [n for n in self.supervisors if n in set(names)]
        done: set[str] = set()
        out: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            done.add(name)
            for dep in self.supervisors[name].config.depends_on:
                if dep in wanted:
                    visit(dep)
            out.append(name)

        for name in wanted:
            visit(name)
        return out

    async def _start_group(self, names: list[str]) -> None:
        """Start `names`; an app with dependencies launches its process once they serve."""
        for name in self._order(names):
            sup = self.supervisors[name]
            deps = [d for d in sup.config.depends_on if d in self.supervisors]
            await sup.start(after=functools.partial(self._dependencies_ready, deps)
                            if deps else None)

    async def _dependencies_ready(self, deps: list[str]) -> str | None:
        """None once every dependency serves; else why one never will."""
        for dep in deps:
            sup = self.supervisors.get(dep)
            if sup is None:
                continue
            while sup.state not in SERVING and sup.state not in IDLE:
                await sup.wait_ready(self.start_timeout)
            if sup.state not in SERVING:
                return f"dependency {dep!r} is {sup.state}"
        return None

    async def _stop_group(self, names: list[str]) -> None:
        """Stop in waves: an app stops once no app still running depends on it."""
        remaining = self._order(names)
        while remaining:
            needed = {dep for n in remaining for dep in self.supervisors[n].config.depends_on}
            wave = [n for n in remaining if n not in needed] or remaining
            await asyncio.gather(*(self.supervisors[n].close() for n in wave))
            remaining = [n for n in remaining if n not in wave]

    def __repr__(self) -> str:
        states = ", ".join(f"{n}={s.state}" for n, s in self.supervisors.items())
        return f"<Orchestrator backend={self.default_backend} apps=[{states}]>"
