"""nginx-style location routing: selecting a location, and the actions a location takes.

`locations` picks the location for a path, `staticfiles` serves files under a root,
`upstream` turns a ``proxy_pass`` URL into an upstream target, `actions` holds the small
``return`` and ``headers`` actions. `gateway.extensions.routing` wires them into the pipeline.
"""
