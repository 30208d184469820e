"""Pipeline members, one per module. Each is plain ASGI; see `base.Extension`."""
