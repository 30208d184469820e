"""Small apps the orchestrator and mount tests run (raw ASGI/WSGI, no framework needed)."""
