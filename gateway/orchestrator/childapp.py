"""The import target servers load in an app process: ``gateway.orchestrator.childapp:app``.

Importing this module builds the app from the description in the environment (every worker
inherits it). It exists only for app processes; nothing in the workbench imports it. A
plain module attribute, not a lazy one, because some servers (hypercorn) look the name up
in the module's namespace rather than with getattr.
"""

from gateway.orchestrator.apploader import child_app

app = child_app()
