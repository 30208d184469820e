"""The import target servers load in an app process: ``gateway.orchestrator.childapp:app``.

Importing this module in an app process builds the app from the description in the
environment (every worker inherits it). `app` is a plain module attribute, not a lazy one,
because some servers (hypercorn) look the name up in the module's namespace rather than
with getattr. Anywhere else (no description in the environment) `app` is None, so tools
that import every module stay harmless.
"""

import os

from gateway.orchestrator.apploader import child_app
from gateway.orchestrator.protocol import SPEC_ENV
from gateway.types import ASGIApp

app: ASGIApp | None = child_app() if os.environ.get(SPEC_ENV) else None
