"""Helpers of the export tests: the engines' own validators, and a real nginx to run.

Each validator runs offline and fails the test on any complaint, not only on its exit
status: `systemd-analyze verify` and `nginx -t` return 0 after printing warnings.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.config import load_config
from gateway.deploy import ExportResult, export_files, write_export
from tests.support.harness import poll
from tests.support.integration import COMING_UP

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
KUBERNETES_VERSION = "1.30.0"


def need(tool: str | None, name: str) -> str:
    if tool is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return tool


def export(config: Path, target: str, out: Path, **overrides: object) -> ExportResult:
    project = load_config(config, overrides=overrides or None, environ={})
    result = export_files(project, target, out)
    write_export(result, out)
    return result


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def nginx_main_args(prefix: Path) -> list[str]:
    """Run as this user, with every file nginx writes inside `prefix`."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    main = f"pid {prefix / 'nginx.pid'};"
    if os.geteuid() == 0:
        main += " user root;"  # workers must read the test's private temp folders
    return ["-p", str(prefix), "-e", str(prefix / "logs" / "error.log"), "-g", main]


def nginx_test(conf: Path, prefix: Path) -> None:
    """`nginx -t`, failing on any warning as well as on errors."""
    nginx = need(NGINX, "nginx")
    done = _run([nginx, "-t", "-c", str(conf), *nginx_main_args(prefix)])
    lines = [ln for ln in done.stderr.splitlines()
             if not re.search(r"syntax is ok|test is successful", ln)]
    assert done.returncode == 0 and not lines, done.stderr


def with_local_upstreams(conf_text: str, cache: Path) -> str:
    """A container nginx.conf made testable here: service names resolve only inside the
    cluster, so `nginx -t` gets 127.0.0.1 with the same ports; the cache goes to `cache`."""
    text = re.sub(r"(\n\s*server )[A-Za-z0-9-]+(:\d+;)", r"\g<1>127.0.0.1\g<2>", conf_text)
    return re.sub(r"proxy_cache_path \S+", f"proxy_cache_path {cache}", text)


def systemd_verify(folder: Path) -> None:
    tool = need(SYSTEMD_ANALYZE, "systemd-analyze")
    units = sorted(p.name for p in folder.iterdir()
                   if p.suffix in (".service", ".target"))
    done = _run([tool, "verify", *[f"./{u}" for u in units]], cwd=folder)
    # A unit file that asks for a unit we do not ship (multi-user.target is there on any
    # host with systemd, but not in a minimal container) is no fault of ours.
    lines = [ln for ln in (done.stdout + done.stderr).splitlines()
             if ln.strip() and "multi-user.target" not in ln]
    assert done.returncode == 0 and not lines, "\n".join(lines)


def kubernetes_validate(files: list[Path]) -> None:
    done = _run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                 "-k", KUBERNETES_VERSION, *map(str, files)])
    assert done.returncode == 0, done.stdout + done.stderr


def compose_validate(file: Path) -> None:
    tool = shutil.which("check-jsonschema", path=os.path.dirname(sys.executable)) \
        or shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is in the test extra"
    done = _run([tool, "--builtin-schema", "vendor.compose-spec", str(file)])
    assert done.returncode == 0, done.stdout + done.stderr


class Nginx:
    """A real nginx in the foreground (`daemon off`), in its own process group."""

    def __init__(self, conf: Path, prefix: Path) -> None:
        nginx = need(NGINX, "nginx")
        self.prefix = prefix
        self.proc = subprocess.Popen(
            [nginx, "-c", str(conf), *nginx_main_args(prefix)[:-1],
             nginx_main_args(prefix)[-1] + " daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            log = (self.prefix / "logs" / "error.log")
            raise AssertionError(f"nginx exited with {self.proc.returncode}: {out}"
                                 + (log.read_text() if log.exists() else ""))

    def wait_answering(self, client: httpx.Client, timeout: float = 20.0) -> None:
        """Until nginx answers /health on `client`'s address (failing at once if it died)."""
        def up() -> bool:
            self.check_running()
            try:
                return client.get("/health").status_code == 200
            except httpx.TransportError:
                return False
        poll(up, timeout, what="nginx to answer", ignore=COMING_UP)

    def error_log(self) -> str:
        log = self.prefix / "logs" / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            # The master and its workers share the group it leads; TERM is a fast shutdown.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
