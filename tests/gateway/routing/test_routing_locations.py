"""The location selection algorithm on its own: nginx's priority rules, no sockets."""

from __future__ import annotations

import pytest

from gateway.routing.locations import LocationKind, LocationTable, parse_pattern


def table(*patterns: str) -> LocationTable[str]:
    return LocationTable((p, p) for p in patterns)


def pick(t: LocationTable[str], path: str) -> str | None:
    m = t.select(path.encode())
    return None if m is None else m.value


@pytest.mark.parametrize(("pattern", "kind", "text"), [
    ("=/p", LocationKind.EXACT, "/p"),
    ("^~/static/", LocationKind.PREFIX_STOP, "/static/"),
    ("~^/api", LocationKind.REGEX, "^/api"),
    ("~*\\.png$", LocationKind.REGEX_NOCASE, "\\.png$"),
    ("~ \\.php$", LocationKind.REGEX, "\\.php$"),
    ("/docs", LocationKind.PREFIX, "/docs"),
    ("__default__", LocationKind.DEFAULT, ""),
])
def test_parse_pattern(pattern: str, kind: LocationKind, text: str) -> None:
    assert parse_pattern(pattern) == (kind, text)


def test_parse_pattern_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        parse_pattern("docs")


def test_exact_beats_everything() -> None:
    t = table("~^/ping", "^~/ping", "/ping", "=/ping", "__default__")
    assert pick(t, "/ping") == "=/ping"
    # ...but only for the exact path
    assert pick(t, "/ping/x") == "^~/ping"


def test_exact_match_has_whole_path_as_prefix() -> None:
    m = table("=/a/b").select(b"/a/b")
    assert m is not None and m.prefix == b"/a/b" and m.groups == {}


def test_stop_prefix_beats_regex() -> None:
    t = table("~\\.js$", "^~/static/")
    assert pick(t, "/static/app.js") == "^~/static/"
    assert pick(t, "/other/app.js") == "~\\.js$"


def test_plain_prefix_loses_to_regex() -> None:
    t = table("/static/", "~\\.js$")
    assert pick(t, "/static/app.js") == "~\\.js$"
    assert pick(t, "/static/app.css") == "/static/"


def test_stop_prefix_only_counts_when_it_is_the_longest() -> None:
    # nginx remembers the longest prefix; a shorter ^~ does not stop the regex search.
    t = table("^~/a/", "/a/b/", "~/a/b/c")
    assert pick(t, "/a/b/c") == "~/a/b/c"
    assert pick(t, "/a/b/x") == "/a/b/"
    assert pick(t, "/a/x") == "^~/a/"


def test_longer_stop_prefix_wins_over_shorter_plain_and_regex() -> None:
    t = table("/a/", "^~/a/b/", "~/a/b/c")
    assert pick(t, "/a/b/c") == "^~/a/b/"


def test_first_regex_in_file_order_wins() -> None:
    t = table("~^/api/v1", "~^/api", "~^/api/v1/users")
    assert pick(t, "/api/v1/users") == "~^/api/v1"
    assert pick(t, "/api/v2") == "~^/api"


def test_longest_prefix_when_no_regex_matches() -> None:
    t = table("/", "/api/", "/api/v1/", "/api/v1/users/x", "~\\.php$")
    assert pick(t, "/api/v1/users") == "/api/v1/"
    assert pick(t, "/api/v2") == "/api/"
    assert pick(t, "/home") == "/"


def test_prefix_order_in_file_does_not_matter() -> None:
    assert pick(table("/api/v1/", "/api/"), "/api/v1/x") == "/api/v1/"
    assert pick(table("/api/", "/api/v1/"), "/api/v1/x") == "/api/v1/"


def test_case_sensitive_and_insensitive_regex() -> None:
    t = table("~\\.png$", "~*\\.JPG$")
    assert pick(t, "/a.png") == "~\\.png$"
    assert pick(t, "/a.PNG") is None
    assert pick(t, "/a.jpg") == "~*\\.JPG$"
    assert pick(t, "/a.JpG") == "~*\\.JPG$"


def test_regex_is_a_search_not_a_full_match() -> None:
    assert pick(table("~/img/"), "/assets/img/x.png") == "~/img/"


def test_default_is_the_last_resort() -> None:
    t = table("__default__", "=/x", "/api/", "~\\.js$")
    assert pick(t, "/x") == "=/x"
    assert pick(t, "/api/a") == "/api/"
    assert pick(t, "/a.js") == "~\\.js$"
    assert pick(t, "/elsewhere") == "__default__"
    m = t.select(b"/elsewhere")
    assert m is not None and m.prefix == b"/"


def test_no_match_is_none() -> None:
    t = table("=/x", "/api/", "~\\.js$")
    assert t.select(b"/nothing") is None
    assert table().select(b"/") is None


def test_named_groups_are_captured_and_missing_ones_empty() -> None:
    t = table("~^/u/(?P<user>[^/]+)(?:/(?P<tab>\\w+))?$")
    m = t.select(b"/u/ann")
    assert m is not None and m.groups == {"user": "ann", "tab": ""} and m.prefix == b""
    m = t.select(b"/u/ann/posts")
    assert m is not None and m.groups == {"user": "ann", "tab": "posts"}


def test_prefix_match_reports_consumed_prefix() -> None:
    m = table("^~/static/").select(b"/static/css/a.css")
    assert m is not None and m.prefix == b"/static/"


def test_duplicate_prefix_keeps_the_first_written() -> None:
    t = LocationTable([("/p", "plain"), ("^~/p", "stop")])
    assert pick(t, "/p/x") == "plain"


def test_iteration_and_repr_describe_the_table() -> None:
    t = table("~a", "/x", "/xyz", "=/e", "__default__")
    assert [loc.pattern for loc in t] == ["=/e", "/xyz", "/x", "~a", "__default__"]
    assert len(t) == 5
    assert "regexes=1" in repr(t)


def test_slash_redirect_for_locations_that_want_it() -> None:
    # nginx's auto_redirect: /api names no location, /api/ wants the redirect.
    t = LocationTable([("/api/", "proxy"), ("=/exact/", "proxy"), ("/docs/", "files"),
                       ("/both/", "proxy"), ("/both", "plain"), ("~^/api$", "regex")],
                      slash_redirect=lambda value: value == "proxy")
    m = t.select(b"/api")
    assert m is not None and m.redirect and m.location.key == b"/api/"
    m = t.select(b"/exact")
    assert m is not None and m.redirect and m.location.key == b"/exact/"
    assert pick(t, "/docs") is None                      # not a location that wants it
    m = t.select(b"/both")
    assert m is not None and not m.redirect and m.value == "plain"   # /both is a location
    m = t.select(b"/api/")
    assert m is not None and not m.redirect
