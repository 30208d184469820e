"""nginx-style location routing: selecting a location, and the actions a location takes.

`uri` normalises the request path as nginx does (the one path everything below sees),
`locations` picks the location for it, `staticfiles` serves files under a root, `upstream`
turns a ``proxy_pass`` URL into an upstream target, `actions` holds the small ``return`` and
``headers`` actions. `gateway.extensions.routing` wires them into the pipeline.
"""
