"""Stand-ins on 127.0.0.1 for the Hugging Face hub and WorldClim's download server.

`FakeHub` answers what `huggingface_hub` asks of the real hub (point `HF_ENDPOINT` at it):

- `GET /api/models/ORG/NAME/revision/REV`: repository info (`sha`, `siblings`);
- `GET /api/models/ORG/NAME/tree/REV`: the file listing, with `oid`, `size` and, for LFS files
  (weights), `lfs.oid` = sha256;
- `HEAD|GET /ORG/NAME/resolve/REV/FILE`: small files directly (ETag = git blob id); LFS files
  by a 302 to `/cdn/SHA256` with `X-Linked-Etag` / `X-Linked-Size`, as the real hub does;
- `GET /cdn/SHA256` on a second port (another origin, as the real CDN is): the content, with
  HTTP Range.

Errors as the hub sends them: an unknown repository is a 404 with `X-Error-Code: RepoNotFound`,
a gated one a 403 with `X-Error-Code: GatedRepo`. Faults: `api_500` (the next N API calls get a
500), `drop_after` (the next download of a file breaks its connection after N bytes) and
`corrupt` (files served with one byte changed, under their true ETag).

`FakeWorldClim` serves `/wc2.1_5m_elev.zip` and `/wc2.1_5m_bio.zip` with Range support, and can
drop the first download after N bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".zip")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Server:
    """A threaded HTTP/1.1 server calling `self.route(handler, method)`."""

    def __init__(self, route=None) -> None:
        owner = self
        if route is not None:
            self.route = route

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.route(self, "GET")

            def do_HEAD(self):
                owner.route(self, "HEAD")

            def do_POST(self):
                owner.route(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.lock = threading.Lock()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def log(self, handler, method: str) -> str:
        path = unquote(urlparse(handler.path).path)
        with self.lock:
            self.requests.append((method, path, handler.headers.get("Range")))
        return path

    @staticmethod
    def reply(handler, status: int, body: bytes = b"", headers: dict | None = None, method="GET"):
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if method != "HEAD" and body:
            handler.wfile.write(body)

    def serve_bytes(self, handler, method: str, data: bytes, headers: dict, drop_after=None):
        """`data` with HTTP Range; `drop_after` bytes then a broken connection."""
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            if start >= len(data):
                return self.reply(handler, 416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        handler.send_response(206 if ranged else 200)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        if ranged:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if method == "HEAD":
            return
        if drop_after is not None:
            handler.wfile.write(body[:drop_after])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        handler.wfile.write(body)


class FakeHub(_Server):
    def __init__(self) -> None:
        super().__init__()
        self.cdn_server = _Server(route=self.cdn_route)
        self.cdn_server.requests = self.requests
        self.repos: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content
        self.api_500 = 0
        self.drop_after: dict[str, int] = {}  # file name -> bytes before the break (once)
        self.corrupt: set[str] = set()
        self.counts: Counter = Counter()

    def add_repo(self, repo_id: str, folder: Path, gated: bool = False) -> str:
        """Serve every file of `folder` as `repo_id` at branch `main`; returns the commit."""
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        commit = secrets.token_hex(20)
        self.repos[repo_id] = {"commit": commit, "files": files, "gated": gated}
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def route(self, handler, method: str) -> None:
        path = self.log(handler, method)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?", path):
            return self.api(handler, m.group(1), m.group(2), m.group(3))
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self.resolve(handler, method, m.group(1), m.group(2), m.group(3))
        self.reply(handler, 404, b'{"error": "not found"}', method=method)

    def __enter__(self):
        self.cdn_server.__enter__()
        return super().__enter__()

    def stop(self) -> None:
        super().stop()
        self.cdn_server.stop()

    def cdn_route(self, handler, method: str) -> None:
        path = self.log(handler, method)
        if m := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
            return self.cdn(handler, method, m.group(1))
        self.reply(handler, 404, method=method)

    def _check(self, handler, repo_id: str, method: str) -> dict | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self.reply(handler, 404, b'{"error": "Repository not found"}',
                       {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, method)  # fmt: skip
            return None
        if repo["gated"]:
            message = f"Access to model {repo_id} is restricted. You must have access to it."
            self.reply(handler, 403, json.dumps({"error": message}).encode(),
                       {"X-Error-Code": "GatedRepo", "X-Error-Message": message}, method)  # fmt: skip
            return None
        return repo

    def api(self, handler, repo_id: str, kind: str, revision: str) -> None:
        with self.lock:
            if self.api_500:
                self.api_500 -= 1
                return self.reply(handler, 500, b'{"error": "Internal Error"}')
        repo = self._check(handler, repo_id, "GET")
        if repo is None:
            return
        if revision not in ("main", repo["commit"]):
            return self.reply(handler, 404, b'{"error": "Invalid rev id"}',
                              {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})  # fmt: skip
        if kind == "revision":
            info = {
                "id": repo_id, "modelId": repo_id, "sha": repo["commit"], "private": False,
                "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": [{"rfilename": name} for name in repo["files"]],
            }  # fmt: skip
        else:
            info = [self._entry(name, data) for name, data in repo["files"].items()]
        self.reply(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def _entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
        if name.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
        return entry

    def resolve(self, handler, method: str, repo_id: str, revision: str, name: str) -> None:
        repo = self._check(handler, repo_id, method)
        if repo is None:
            return
        data = repo["files"].get(name)
        if data is None:
            return self.reply(handler, 404, b"", {"X-Error-Code": "EntryNotFound"}, method)
        headers = {"X-Repo-Commit": repo["commit"]}
        if name.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            headers |= {"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                        "ETag": f'"{git_blob_id(data)}"', "Location": f"{self.cdn_server.url}/cdn/{sha}"}  # fmt: skip
            return self.reply(handler, 302, b"", headers, method)
        with self.lock:
            self.counts[name] += method == "GET"
        self.serve_bytes(handler, method, data, headers | {"ETag": f'"{git_blob_id(data)}"'})

    def cdn(self, handler, method: str, sha: str) -> None:
        data = self.blobs.get(sha)
        if data is None:
            return self.reply(handler, 404, method=method)
        name = next(n for r in self.repos.values() for n, d in r["files"].items() if d is data)
        drop = None
        with self.lock:
            if method == "GET":
                self.counts[name] += 1
                drop = self.drop_after.pop(name, None)
        if name in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.serve_bytes(handler, method, data, {"ETag": f'"{sha}"'}, drop)


class FakeWorldClim(_Server):
    def __init__(self, archives: dict[str, bytes]) -> None:
        super().__init__()
        self.archives = archives
        self.drop_after: dict[str, int] = {}

    def route(self, handler, method: str) -> None:
        name = self.log(handler, method).lstrip("/")
        data = self.archives.get(name)
        if data is None:
            return self.reply(handler, 404, method=method)
        with self.lock:
            drop = self.drop_after.pop(name, None) if method == "GET" else None
        self.serve_bytes(handler, method, data, {"Content-Type": "application/zip"}, drop)
