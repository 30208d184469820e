"""granian's private internals that `gateway/servers/granian_adapter.py` relies on.

The adapter re-implements granian's private `Server._spawn_asgi_worker` (made idempotent on
stop, calling the app straight from the protocol object), overrides `_init_shared_socket`
(to serve the engine's socket), replaces `configure_logging` while granian's constructor
runs, and builds `ASGIWorker` / `SocketHolder` itself. None of that is granian's public API:
any release may change it without notice. `pyproject.toml` pins granian to the range the
adapter was tested with; these fingerprints fail loudly, naming what to re-check, as soon as
the installed granian differs from what the adapter copies.

After re-checking the adapter against a new granian: update the fingerprints below and the
`granian` range in pyproject.toml together.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from granian import _futures, _granian, asgi
from granian.server import common, embed
from packaging.requirements import Requirement

TESTED_WITH = "2.8.9"
ROOT = Path(__file__).resolve().parents[3]

#: (what, how to get it, sha256 of its dedented source (first 16 hex digits), what to re-check)
SOURCES: list[tuple[str, Callable[[], Any], str, str]] = [
    ("granian.server.embed.Server._spawn_asgi_worker",
     lambda: embed.Server.__dict__["_spawn_asgi_worker"].__func__, "f3a32d64f872d227",
     "_SharedSocketServer._spawn_asgi_worker is a copy of it: carry over its new arguments "
     "and the ASGIWorker(...) call, keep the idempotent shutdown callback"),
    ("granian.server.embed.AsyncWorker.wrap_target", lambda: embed.AsyncWorker.wrap_target,
     "e4268fd63b3d3b38",
     "the copy is decorated with it: the arguments it passes must still match"),
    ("granian.server.common.AbstractServer._init_shared_socket",
     lambda: common.AbstractServer._init_shared_socket, "3476e46284fbd41e",
     "_SharedSocketServer._init_shared_socket must set the same attributes (_ssp, _shd, _sfd)"),
    ("granian._futures._future_watcher_wrapper", lambda: _futures._future_watcher_wrapper,
     "10411df69108e717",
     "_direct_watcher stands in for it: the watcher's scope/proto/err/done must still be "
     "what it uses"),
    ("granian.asgi._callback_wrapper", lambda: asgi._callback_wrapper, "1af931f6cd2315b7",
     "_direct_watcher skips it: check it still adds nothing the gateway needs per request"),
    ("granian._futures._new_cbscheduler", lambda: _futures._new_cbscheduler,
     "5340a9ef6b45ce9b", "the copied worker calls it as (loop, callback, impl_asyncio=)"),
]

#: Signatures of what the adapter calls or replaces (Rust classes expose text signatures).
SIGNATURES: list[tuple[str, Callable[[], str], str]] = [
    ("granian.server.common.configure_logging",
     lambda: str(inspect.signature(common.configure_logging)),
     "(level: granian.log.LogLevels, config: dict[str, typing.Any] | None = None, "
     "enabled: bool = True)"),
    ("granian._granian.SocketHolder", lambda: _granian.SocketHolder.__text_signature__,
     "(fd, uds, backlog)"),
    ("granian._granian.ASGIWorker", lambda: _granian.ASGIWorker.__text_signature__,
     '(worker_id, sock, ipc, threads=1, blocking_threads=512, py_threads=1, '
     'py_threads_idle_timeout=30, backpressure=256, http_mode="1", http1_opts=None, '
     'http2_opts=None, websockets_enabled=False, static_files=None, ssl_enabled=False, '
     'ssl_cert=None, ssl_key=None, ssl_key_password=None, ssl_protocol_min="1.3", '
     'ssl_ca=None, ssl_crl=..., ssl_client_verify=False, metrics=...)'),
]


def _fingerprint(obj: Any) -> str:
    source = textwrap.dedent(inspect.getsource(obj))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@pytest.mark.parametrize(("what", "get", "expected", "recheck"), SOURCES,
                         ids=[s[0] for s in SOURCES])
def test_private_granian_code_the_adapter_copies_is_unchanged(
        what: str, get: Callable[[], Any], expected: str, recheck: str) -> None:
    assert _fingerprint(get()) == expected, (
        f"granian {version('granian')} changed {what} (the adapter was written against "
        f"granian {TESTED_WITH}). Re-check gateway/servers/granian_adapter.py: {recheck}; "
        "then update this fingerprint and the granian range in pyproject.toml.")


@pytest.mark.parametrize(("what", "get", "expected"), SIGNATURES,
                         ids=[s[0] for s in SIGNATURES])
def test_private_granian_signatures_the_adapter_calls_are_unchanged(
        what: str, get: Callable[[], str], expected: str) -> None:
    assert get() == expected, (
        f"granian {version('granian')} changed the signature of {what} (the adapter was "
        f"written against granian {TESTED_WITH}). Re-check how "
        "gateway/servers/granian_adapter.py calls or replaces it; then update this "
        "signature and the granian range in pyproject.toml.")


def test_the_pinned_range_holds_the_tested_version_and_the_installed_one() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pinned = next(Requirement(r) for r in project["project"]["dependencies"]
                  if Requirement(r).name == "granian")
    assert pinned.specifier.contains(TESTED_WITH), pinned
    assert pinned.specifier.contains(version("granian")), pinned
    # An open upper bound would let any new granian in untested.
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in pinned.specifier), pinned
