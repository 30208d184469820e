"""/metrics shows every extension's counters under "extensions", in JSON and Prometheus."""

from __future__ import annotations

from tests.support.extensions import gateway

ALL = """
[[extensions]]
type = "cors"
[[extensions]]
type = "monitoring"
[[extensions]]
type = "rate_limit"
[extensions.config]
requests_per_minute = 600
burst_size = 100
[[extensions]]
type = "compression"
[[extensions]]
type = "caching"
[[extensions]]
type = "security"
[extensions.config]
blocked_ips = ["10.0.0.0/8"]
"""


async def test_metrics_show_each_extensions_counters(tmp_path, monkeypatch) -> None:
    async with gateway(ALL, tmp_path, monkeypatch) as (served, upstream, client):
        # security runs first whatever its place in the file.
        assert [m.name for m in served.app.pipeline.members][:2] == ["security", "cors"]
        await client.get("/a", headers={"Accept-Encoding": "gzip"})
        r = await client.get("/a?size=4000", headers={"Accept-Encoding": "gzip",
                                                       "Origin": "https://x.test"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["access-control-allow-origin"] == "*"
        assert (await client.get("/a")).headers["x-cache"] == "HIT"
        ext = (await client.get("/metrics")).json()["extensions"]
        assert ext["security"] == {"blocked": 0, "allowed": 3}
        assert ext["caching"]["hits"] == 1 and ext["caching"]["misses"] == 2
        assert {"evictions", "entries", "bytes"} <= set(ext["caching"])
        assert ext["rate_limit"]["allowed"] == 3 and ext["rate_limit"]["clients"] == 1
        assert ext["compression"]["compressed"] == 1
        assert ext["cors"]["allowed"] == 1
        assert ext["monitoring"]["requests"] == 3  # before caching: it sees the hit too
        text = (await client.get("/metrics?format=prometheus")).text
        assert 'pyserve_extension_hits{extension="caching"} 1' in text
        assert 'pyserve_extension_limited{extension="rate_limit"} 0' in text
