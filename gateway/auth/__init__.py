"""Authentication for the `auth` extension: password hashes, tokens, forward auth.

    passwords.py   htpasswd hashes (bcrypt, {SHA}, $apr1$), verified off the event loop,
                   successful checks remembered briefly
    tokens.py      JWT: HMAC secret, PEM public key or JWKS file; algorithms pinned per key
    forward.py     ask another service (an URL or an orchestrated app) for every request
    paths.py       which paths an `auth` entry covers (`paths`, `exclude_paths`)

The optional libraries (bcrypt, libpass, PyJWT with cryptography) are imported only by the
project files that use them; a missing one is a configuration error naming the package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Install hint for every optional library the auth extension may need.
EXTRA = "pip install 'pyserve-tui[auth]'"


class MissingLibrary(Exception):
    """An optional library this configuration needs is not installed."""


def need(module: str, package: str) -> ModuleType:
    """Import `module`, or raise `MissingLibrary` naming the PyPI `package`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingLibrary(f"needs the {package!r} package, which is not installed "
                             f"({EXTRA})") from None
