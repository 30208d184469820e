"""The request log: what it keeps, what it publishes, and that it keeps it out of the GC's way."""

from __future__ import annotations

import gc

from gateway.events import EventBus, RequestsCompleted
from gateway.requestlog import BATCH, RequestLog, RequestRecord


def raw(i: int) -> tuple:
    """A finished request as the gateway hands it to the log: RequestRecord's fields."""
    return (1000.0 + i, f"rid-{i}", "GET", f"/p/{i}", "", "127.0.0.1", 200, 1.5, "api",
            "/", "http://127.0.0.1:9000", 0.1, 0.5, 1.0, None, None,
            ((b"host", b"example"), (b"accept", b"*/*")),
            ((b"content-type", b"text/plain"), (b"x-request-id", f"rid-{i}".encode())), ())


def published(events: EventBus) -> list[RequestsCompleted]:
    seen: list[RequestsCompleted] = []
    events.subscribe(lambda ev: seen.append(ev) if isinstance(ev, RequestsCompleted) else None)
    return seen


def test_kept_requests_are_not_tracked_by_the_garbage_collector() -> None:
    # A tracked record is walked by every collection; ten thousand of them made every full
    # collection of a busy gateway walk the whole log. Only the batch being filled is not
    # encoded yet.
    log = RequestLog(EventBus(), size=1000)
    for i in range(1000):
        log.add(raw(i))
    gc.collect()
    assert not any(gc.is_tracked(blob) for _, _, blob in log._chunks)
    assert len(log._pending) < BATCH
    assert sum(count for _, count, _ in log._chunks) + len(log._pending) >= 1000


def test_batches_keep_exactly_the_newest_size_requests() -> None:
    events = EventBus()
    seen = published(events)
    log = RequestLog(events, size=100)
    for i in range(1000):
        log.add(raw(i))
        if i % 50 == 49:  # a flush a batch and a bit apart, never more than the size
            log.flush()
    ids = [r.request_id for r in log.snapshot()]
    assert ids == [f"rid-{i}" for i in range(900, 1000)]
    assert log.find("rid-899") is None and log.find("rid-900").path == "/p/900"
    assert log.find("rid-999").path == "/p/999"
    # Every request published once, in order.
    assert [r.request_id for ev in seen for r in ev.records] == [f"rid-{i}" for i in range(1000)]


def test_find_and_snapshot_give_records_with_their_fields() -> None:
    log = RequestLog(EventBus(), size=10)
    for i in range(3):
        log.add(raw(i))
    found = log.find("rid-1")
    assert isinstance(found, RequestRecord)
    assert (found.path, found.app, found.status) == ("/p/1", "api", 200)
    assert found.response_headers[1] == (b"x-request-id", b"rid-1")
    assert log.find("rid-9") is None
    assert [r.request_id for r in log.snapshot()] == ["rid-0", "rid-1", "rid-2"]
    assert len(log) == 3


def test_flush_publishes_each_request_once_in_order() -> None:
    events = EventBus()
    seen = published(events)
    log = RequestLog(events, size=10)
    log.flush()
    assert seen == []  # nothing new: nothing published
    for i in range(3):
        log.add(raw(i))
    log.flush()
    log.add(raw(3))
    log.flush()
    log.flush()
    assert [[r.request_id for r in ev.records] for ev in seen] == [
        ["rid-0", "rid-1", "rid-2"], ["rid-3"]]
    assert all(isinstance(r, RequestRecord) for ev in seen for r in ev.records)


def test_the_ring_and_the_unpublished_backlog_are_bounded_by_its_size() -> None:
    events = EventBus()
    seen = published(events)
    log = RequestLog(events, size=5)
    for i in range(12):
        log.add(raw(i))
    assert len(log) == 5
    log.flush()  # only what is still kept can be published
    assert [r.request_id for r in seen[0].records] == [f"rid-{i}" for i in range(7, 12)]


def test_resize_keeps_the_newest() -> None:
    events = EventBus()
    seen = published(events)
    log = RequestLog(events, size=10)
    for i in range(8):
        log.add(raw(i))
    log.resize(3)
    assert [r.request_id for r in log.snapshot()] == ["rid-5", "rid-6", "rid-7"]
    log.flush()
    assert [r.request_id for r in seen[0].records] == ["rid-5", "rid-6", "rid-7"]
    log.resize(6)
    log.add(raw(8))
    assert [r.request_id for r in log.snapshot()] == ["rid-5", "rid-6", "rid-7", "rid-8"]


def test_values_marshal_cannot_write_are_kept_as_text() -> None:
    class Verdict:
        def __repr__(self) -> str:
            return "<Verdict deny>"

    log = RequestLog(EventBus(), size=10)
    log.add(raw(0)[:-1] + ((("plugin", Verdict()), ("cors", "origin refused")),))
    assert log.find("rid-0").notes == (("plugin", "<Verdict deny>"), ("cors", "origin refused"))
    # Headers an app got wrong are kept too, never an error at the end of the request.
    odd = raw(1)[:17] + (((b"x-odd", Verdict()), (b"x-buf", bytearray(b"v"))),) + raw(1)[18:]
    log.add(odd)
    assert log.find("rid-1").response_headers == ((b"x-odd", "<Verdict deny>"), (b"x-buf", b"v"))


def test_find_decodes_only_the_request_asked_for() -> None:
    log = RequestLog(EventBus(), size=10)
    log.add(raw(1))
    # An id that occurs inside another request's bytes (here in its path) is not a match.
    log.add(raw(2)[:3] + ("/rid-1",) + raw(2)[4:])
    assert log.find("rid-1").path == "/p/1"
    assert log.find("rid-") is None


def test_a_batch_decodes_only_the_newest_requests_a_listener_asks_for() -> None:
    decoded: list[bytes] = []

    def decode(blob: bytes) -> str:
        decoded.append(blob)
        return blob.decode()

    batch = RequestsCompleted(encoded=(b"a", b"b", b"c", b"d"), decode=decode)
    assert len(batch) == 4
    assert batch.latest(2) == ("c", "d")
    assert decoded == [b"c", b"d"]
    assert batch.latest(0) == ()
    assert batch.latest(9) == ("a", "b", "c", "d")
    assert batch.records == ("a", "b", "c", "d")
    assert RequestsCompleted(("x", "y")).latest(1) == ("y",)
