"""One instant query against the Prometheus HTTP API, for the dev scripts beside this file."""
import json
import urllib.parse
import urllib.request


def instant(base, query, at=None):
    """The result vector of `query` at unix time `at` (now if None); raises on a refused query."""
    params = {"query": query}
    if at is not None:
        params["time"] = f"{float(at):.0f}"
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{query}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]
