"""What the tests share, and the only place a test module imports helpers from.

- `harness`: waiting (`wait_until`, `poll`), free ports, project files (`project_file`), the raw
  HTTP reader (`read_response`), "nothing left running" (`left_running`,
  `assert_nothing_left`), a real gateway from project-file text (`serve_config`), `ROOT`.
- `integration`, `deploy`, `chaos`: a real `pyserve-tui` process and what drives it.
- `orchestration`, `orch_gateway`: orchestrator tests' apps, recorder and served gateway.
- `proxy`, `routing`, `nginx`, `extensions`: raw upstreams, raw requests, nginx as the
  oracle, the extension tests' upstream.
- `wb`, `realengine`, `fake_engine`: the workbench on real example apps, on the real engine,
  and on a deterministic fake engine for snapshots.

Fixtures a folder's tests take by name stay in that folder's conftest.py.
"""
