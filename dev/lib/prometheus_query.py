"""Instant and range queries against the Prometheus HTTP API, for the dev scripts beside this file."""
import json
import urllib.parse
import urllib.request


def instant(base, query, at=None):
    """The result vector of `query` at unix time `at` (now if None); raises on a refused query."""
    params = {"query": query}
    if at is not None:
        params["time"] = f"{float(at):.0f}"
    return _get(base, "query", params, 10)


def over_range(base, query, start, end, step):
    """The result matrix of `query` from `start` to `end` (unix times) every `step` seconds."""
    params = {"query": query, "start": f"{start:.0f}", "end": f"{end:.0f}", "step": f"{step:.0f}"}
    return _get(base, "query_range", params, 30)


def _get(base, endpoint, params, timeout):
    url = f"{base}/api/v1/{endpoint}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{params['query']}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]
