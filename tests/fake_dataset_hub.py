"""The hub stand-in extended to dataset repositories: what `HfFileSystem` reads and what
`HfApi.upload_folder` writes.

Routes (the layout of the public hub API as huggingface_hub 2.4 calls it: `hf_api.py`
`repo_info`, `list_repo_tree`, `get_paths_info`, `create_repo`; `_commit_api.py`
`_fetch_upload_modes` and `_create_commit`; https://huggingface.co/docs/hub/api):

- `GET /api/datasets/ORG/NAME[/revision/REV]`: `sha` and `siblings`;
- `GET /api/datasets/ORG/NAME/tree/REV[/PATH]?recursive=`: files (`type` file, `oid`, `size`)
  and folders (`type` directory) under PATH, direct children unless `recursive`;
- `POST /api/datasets/ORG/NAME/paths-info/REV` (form fields `paths`): the entries of those paths;
- `GET|HEAD /datasets/ORG/NAME/resolve/REV/PATH` with `Range: bytes=A-B`;
- `POST /api/repos/create` (JSON `name`, `organization`, `type`);
- `POST /api/datasets/ORG/NAME/preupload/REV`: every file `uploadMode` "regular" (so content
  travels base64 in the commit, no LFS or Xet transfer);
- `POST /api/datasets/ORG/NAME/commit/REV` (NDJSON: a `header`, then `file` lines with base64
  `content`, `deletedFile` / `deletedFolder`): a new commit of the repository.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from urllib.parse import parse_qs, urlparse

from tests.fake_hub import FakeHub, git_blob_id


class FakeDatasetHub(FakeHub):
    """`FakeHub` serving and accepting dataset repositories (`self.datasets`: id -> files)."""

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, dict] = {}
        self.commits = 0
        self.bytes_served = 0

    def route(self, handler, method: str) -> None:
        path = self.log(handler, method)
        query = parse_qs(urlparse(handler.path).query)
        body = b""
        if method == "POST":
            body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        if method == "POST" and path == "/api/repos/create":
            return self.create(handler, json.loads(body))
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)", path):  # repo_info without a revision
            path = f"{path}/revision/main"
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(revision|tree|paths-info|preupload|commit)/([^/]+)(?:/(.*))?", path):  # fmt: skip
            repo = self.datasets.get(m.group(1))
            if repo is None:
                return self.reply(handler, 404, b'{"error": "Repository not found"}',
                                  {"X-Error-Code": "RepoNotFound"}, method)  # fmt: skip
            if m.group(3) not in ("main", repo["commit"]):
                return self.reply(handler, 404, b'{"error": "Invalid rev id"}',
                                  {"X-Error-Code": "RevisionNotFound"}, method)  # fmt: skip
            kind, inner = m.group(2), (m.group(4) or "").strip("/")
            if kind == "revision":
                info = {"id": m.group(1), "sha": repo["commit"], "private": False,
                        "siblings": [{"rfilename": n} for n in repo["files"]]}  # fmt: skip
            elif kind == "tree":
                info = self.tree(repo, inner, query.get("recursive", ["false"])[0] == "true")
            elif kind == "paths-info":
                info = self.paths_info(repo, parse_qs(body.decode()).get("paths", []))
            elif kind == "preupload":
                files = json.loads(body)["files"]
                info = {"files": [{"path": f["path"], "uploadMode": "regular",
                                   "shouldIgnore": False} for f in files]}  # fmt: skip
            else:
                info = self.commit(m.group(1), repo, body)
            return self.json(handler, info)
        if m := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo = self.datasets.get(m.group(1))
            data = None if repo is None else repo["files"].get(m.group(3))
            if data is None:
                return self.reply(handler, 404, b"", {"X-Error-Code": "EntryNotFound"}, method)
            return self.serve_range(handler, method, data, repo["commit"])
        super().route(handler, method)

    def json(self, handler, info) -> None:
        self.reply(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def create(self, handler, request: dict) -> None:
        repo_id = f"{request['organization']}/{request['name']}"
        if repo_id in self.datasets:
            return self.reply(handler, 409, b'{"error": "You already created this dataset repo"}')
        self.datasets[repo_id] = {"commit": secrets.token_hex(20), "files": {}}
        self.json(handler, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id})

    def commit(self, repo_id: str, repo: dict, body: bytes) -> dict:
        files = dict(repo["files"])
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif item["key"] == "deletedFolder":
                files = {k: v for k, v in files.items() if not k.startswith(value["path"].rstrip("/") + "/")}  # fmt: skip
            elif item["key"] != "header":
                raise ValueError(f"commit operation {item['key']} is not served here")
        repo.update(files=files, commit=secrets.token_hex(20))
        self.commits += 1
        return {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{repo['commit']}",
                "commitOid": repo["commit"]}  # fmt: skip

    @staticmethod
    def _folders(files: dict[str, bytes]) -> set[str]:
        return {name.rsplit("/", i)[0] for name in files for i in range(1, name.count("/") + 1)}

    def tree(self, repo: dict, inner: str, recursive: bool) -> list[dict]:
        prefix = f"{inner}/" if inner else ""
        entries = []
        for name, data in sorted(repo["files"].items()):
            rest = name[len(prefix) :]
            if name.startswith(prefix) and (recursive or "/" not in rest):
                entries.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)})  # fmt: skip
        for folder in sorted(self._folders(repo["files"])):
            rest = folder[len(prefix) :]
            if folder.startswith(prefix) and (recursive or "/" not in rest):
                entries.append({"type": "directory", "path": folder, "oid": git_blob_id(folder.encode())})  # fmt: skip
        return entries

    def paths_info(self, repo: dict, paths: list[str]) -> list[dict]:
        folders = self._folders(repo["files"])
        out = []
        for name in paths:
            name = name.strip("/")
            if name in repo["files"]:
                data = repo["files"][name]
                out.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)})  # fmt: skip
            elif name in folders:
                out.append({"type": "directory", "path": name, "oid": git_blob_id(name.encode())})
        return out

    def serve_range(self, handler, method: str, data: bytes, commit: str) -> None:
        """`data` with an HTTP Range `bytes=A-B` or `bytes=A-`, as the hub's resolve serves."""
        headers = {"ETag": f'"{git_blob_id(data)}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}  # fmt: skip
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
        if not ranged:
            return self.reply(handler, 200, data, headers, method)
        start = int(ranged.group(1))
        end = min(int(ranged.group(2)) if ranged.group(2) else len(data) - 1, len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start : end + 1]
        with self.lock:
            self.bytes_served += len(body) * (method == "GET")
        self.reply(handler, 206, body, headers, method)
