"""Every exception the engine raises on purpose.

    GatewayError
    ├── ConfigError              the project file is wrong (file:line:col: where: what); exit 2
    ├── StartupError             the engine cannot start (port in use, backend missing); exit 1
    │   └── BackendNotInstalled  a serving backend or event loop package is not installed
    ├── ControlError             the control channel failed, or no instance is running; exit 1
    ├── AppError                 an app does not exist or cannot do what was asked
    ├── RequestError             the client's request cannot be forwarded as sent -> 4xx
    │   ├── RequestBodyIncomplete  its body ended early: cut short, or malformed -> 400
    │   └── RequestBodyTimeout     its body stalled for longer than the proxy timeout -> 408
    └── UpstreamError            talking to an upstream failed; becomes a 5xx, never a traceback
        ├── UpstreamConnectError   could not connect (refused, reset before a response) -> 502
        ├── UpstreamProtocolError  the upstream sent something that is not HTTP/1.1 -> 502
        ├── UpstreamClosed         the upstream closed the connection mid-response -> 502
        └── UpstreamTimeout        no answer within the proxy timeout -> 504

Lower-layer exceptions (OSError, httptools.HttpParserError, asyncio.TimeoutError) are
translated at the boundary where they happen, so callers only ever catch these.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every deliberate engine error."""

    exit_code = 1


class ConfigError(GatewayError):
    """The project file is invalid. ``str()`` is the one-line user-facing message."""

    exit_code = 2

    def __init__(self, message: str, *, path: str = "", line: int = 0, col: int = 0,
                 where: str = "") -> None:
        self.path = path
        self.line = line
        self.col = col
        self.where = where
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        loc = self.path or "<config>"
        if self.line:
            loc = f"{loc}:{self.line}:{self.col or 1}"
        where = f" {self.where}:" if self.where else ""
        return f"{loc}:{where} {self.message}"


class StartupError(GatewayError):
    exit_code = 1


class BackendNotInstalled(StartupError):
    def __init__(self, name: str, package: str) -> None:
        self.name = name
        self.package = package
        super().__init__(
            f"backend {name!r} is not installed; install it with: pip install {package}"
        )


class ControlError(GatewayError):
    exit_code = 1


class AppError(GatewayError):
    exit_code = 1


class RequestError(GatewayError):
    """The client's side of a proxied request failed; answered with `status` if possible."""

    status = 400


class RequestBodyIncomplete(RequestError):
    """The server reported the end of the request (``http.disconnect``) inside its body: the
    client went away, or (granian) the body was not valid HTTP, e.g. broken chunked coding."""

    status = 400


class RequestBodyTimeout(RequestError):
    status = 408


class UpstreamError(GatewayError):
    status = 502


class UpstreamConnectError(UpstreamError):
    """No response byte came: the connection was refused (`sent` is False: the upstream
    never saw the request), or it closed after the request was written (`sent` is True:
    the upstream may have acted on it). `headers.may_resend` decides what may go again."""

    status = 502

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class UpstreamProtocolError(UpstreamError):
    status = 502


class UpstreamClosed(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504
