"""A local stand-in for the Hugging Face Hub HTTP API, for tests that run the real ``huggingface_hub`` client.

``with FakeHub({"hf_alice_token": "alice"}, mirror_dir=tmp_path / "hub") as hub:`` starts a threaded HTTP
server on 127.0.0.1 (random port); point ``HF_ENDPOINT`` (or ``HfApi(endpoint=hub.url)``) at ``hub.url``.
Implemented, following huggingface_hub 2.4's own requests: whoami-v2, repos/create|delete, validate-yaml,
preupload (always "regular" mode, so no LFS/Xet), commit (ndjson), models|datasets|spaces listing and info,
tree, and the resolve endpoint used by ``hf_hub_download``/``snapshot_download``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = ("model", "dataset", "space")
SPACE_SDKS = ("gradio", "docker", "static")
# URL segment of each repo type: /api/models/..., /datasets/<id>/resolve/...
_PLURAL = {"model": "models", "dataset": "datasets", "space": "spaces"}
_SINGULAR = {v: k for k, v in _PLURAL.items()}
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
# What the real Hub answers for an unknown token (huggingface_hub keys on this exact text).
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which is the ``oid`` the Hub reports for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    """One commit: its id, message and the full file tree after it."""

    oid: str
    message: str
    files: dict[str, bytes]
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    """One repository with a linear history on ``main``."""

    repo_type: str
    repo_id: str
    private: bool = False
    sdk: str | None = None
    created_at: str = field(default_factory=_now)
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def at(self, revision: str) -> Commit | None:
        """The commit a revision names: ``main`` or a (full) commit id."""
        if revision == "main":
            return self.head
        return next((c for c in self.commits if c.oid == revision), None)


@dataclass
class RecordedRequest:
    """What a test may assert on: the request line, which token was sent, and the answer's status."""

    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None
    status: int = 0


class HubHTTPError(Exception):
    """An error answer: status, message and the ``X-Error-Code`` huggingface_hub dispatches on."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict | None = None, body: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})
        self.body = dict(body or {})


class FakeHub:
    """In-memory Hub state plus the HTTP server that serves it.

    ``tokens`` maps valid tokens to usernames; ``read_only_tokens`` may not write; ``orgs`` maps a username to
    the organisations it may write into. Every repo's current files are mirrored under
    ``mirror_dir/<models|datasets|spaces>/<namespace>/<name>/`` so tests can look at what arrived.

    >>> with FakeHub({"hf_x": "alice"}) as hub:
    ...     hub.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        tokens: dict[str, str],
        mirror_dir: str | Path | None = None,
        *,
        read_only_tokens: set[str] | frozenset[str] = frozenset(),
        orgs: dict[str, list[str]] | None = None,
    ):
        self.tokens = dict(tokens)
        self.read_only_tokens = set(read_only_tokens)
        self.orgs = {user: list(names) for user, names in (orgs or {}).items()}
        self.mirror_dir = Path(mirror_dir) if mirror_dir is not None else None
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; only valid while started."""
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        """Bind a random port on 127.0.0.1 and serve in a daemon thread."""
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | str] | None = None,
        *,
        repo_type: str = "model",
        private: bool = False,
        sdk: str | None = None,
    ) -> Repo:
        """Seed a repository (owned by anyone) with files, bypassing auth."""
        with self.lock:
            repo = Repo(repo_type, repo_id, private=private, sdk=sdk)
            self.repos[(repo_type, repo_id)] = repo
            self._append_commit(repo, "initial commit", {})
            if files:
                as_bytes = {p: (c.encode() if isinstance(c, str) else c) for p, c in files.items()}
                self._append_commit(repo, "seed files", as_bytes)
            return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        """The repository, or None when it does not exist."""
        with self.lock:
            return self.repos.get((repo_type, repo_id))

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """Current files of a repository (``{}`` when it does not exist)."""
        repo = self.repo(repo_id, repo_type)
        return dict(repo.head.files) if repo else {}

    def mirror_path(self, repo_id: str, repo_type: str = "model") -> Path:
        """Where this repository's files are mirrored on disk."""
        if self.mirror_dir is None:
            raise RuntimeError("FakeHub was created without mirror_dir")
        return self.mirror_dir / _PLURAL[repo_type] / repo_id

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path starts with ``path_prefix``."""
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # ------------------------------------------------------------------ state changes

    def _append_commit(self, repo: Repo, message: str, files: dict[str, bytes]) -> Commit:
        self._commit_counter += 1
        parent = repo.commits[-1].oid if repo.commits else ""
        digest = hashlib.sha1(f"{parent}\n{message}\n{self._commit_counter}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha1(files[path]).encode())
        commit = Commit(digest.hexdigest(), message, dict(files))
        repo.commits.append(commit)
        self._mirror(repo)
        return commit

    def _mirror(self, repo: Repo) -> None:
        if self.mirror_dir is None:
            return
        target = self.mirror_path(repo.repo_id, repo.repo_type)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path, content in repo.head.files.items():
            out = target / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)

    def _can_write(self, user: str, namespace: str) -> bool:
        return namespace == user or namespace in self.orgs.get(user, [])


# ---------------------------------------------------------------------- card metadata


def card_metadata(readme: bytes | None) -> dict:
    """The YAML header of a README.md as a dict (``{}`` when absent); raises ValueError when invalid."""
    if not readme:
        return {}
    text = readme.decode("utf-8")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if not match:
        return {}
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("YAML metadata must be a mapping")
    return data


def _card_tags(meta: dict) -> list[str]:
    tags = meta.get("tags") or []
    tags = [tags] if isinstance(tags, str) else [str(t) for t in tags]
    if meta.get("library_name"):
        tags.append(str(meta["library_name"]))
    return list(dict.fromkeys(tags))


# ---------------------------------------------------------------------- HTTP handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's pooled client expects
    hub: FakeHub  # set on the per-server subclass

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    # -------------------------------------------------------------- dispatch

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.route = split.path
        self.body = self._read_body()
        token = self._bearer_token()
        record = RecordedRequest(method, self.route, self.query, token)
        with self.hub.lock:
            self.hub.requests.append(record)
        try:
            self.user = self._authenticate(token)
            status, headers, payload = self._route(method)
        except HubHTTPError as err:
            status, headers, payload = self._error(err)
        except Exception as err:  # a bug in the fake must show up as a 500, not a hung client
            status, headers, payload = self._error(HubHTTPError(500, f"fake hub error: {err!r}"))
        record.status = status
        self._send(method, status, headers, payload)

    def _route(self, method: str) -> tuple[int, dict, bytes | dict | list]:
        path = self.route
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami()
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo()
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo()
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml()
        if method == "GET" and (m := re.fullmatch(r"/api/(models|datasets|spaces)", path)):
            return self._list_repos(_SINGULAR[m.group(1)])
        if m := re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(/.*)?", path):
            return self._repo_api(method, _SINGULAR[m.group(1)], m.group(2), m.group(3) or "")
        if method in ("GET", "HEAD") and (
            m := re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        ):
            repo_type = _SINGULAR[m.group(1)] if m.group(1) else "model"
            return self._resolve(method, repo_type, m.group(2), m.group(3), m.group(4))
        raise HubHTTPError(404, f"Sorry, we can't find the page you are looking for ({method} {path}).")

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: str):
        repo_id = unquote(repo_id)
        if method == "GET" and rest == "":
            return self._repo_info(repo_type, repo_id, "main")
        if method == "GET" and (m := re.fullmatch(r"/revision/([^/]+)", rest)):
            return self._repo_info(repo_type, repo_id, unquote(m.group(1)))
        if method == "GET" and (m := re.fullmatch(r"/tree/([^/]+)(?:/(.*))?", rest)):
            return self._tree(repo_type, repo_id, unquote(m.group(1)), unquote(m.group(2) or ""))
        if method == "POST" and (m := re.fullmatch(r"/preupload/([^/]+)", rest)):
            return self._preupload(repo_type, repo_id, unquote(m.group(1)))
        if method == "POST" and (m := re.fullmatch(r"/commit/([^/]+)", rest)):
            return self._commit(repo_type, repo_id, unquote(m.group(1)))
        raise HubHTTPError(404, f"Sorry, we can't find the page you are looking for ({method} {self.route}).")

    # -------------------------------------------------------------- auth

    def _bearer_token(self) -> str | None:
        value = self.headers.get("authorization") or ""
        return value[len("Bearer "):].strip() if value.startswith("Bearer ") else None

    def _authenticate(self, token: str | None) -> str | None:
        if token is None:
            return None
        user = self.hub.tokens.get(token)
        if user is None:
            raise HubHTTPError(401, INVALID_CREDENTIALS)
        return user

    def _require_user(self) -> str:
        if self.user is None:
            raise HubHTTPError(401, "You must be authenticated to do that.")
        return self.user

    def _require_write(self, namespace: str, what: str) -> str:
        user = self._require_user()
        if self._bearer_token() in self.hub.read_only_tokens:
            raise HubHTTPError(403, f"You don't have the rights to {what}: this token is read-only")
        if not self.hub._can_write(user, namespace):
            raise HubHTTPError(403, f"You don't have the rights to {what} under the namespace \"{namespace}\"")
        return user

    def _visible_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not (self.user and self.hub._can_write(self.user, repo.namespace))):
            raise HubHTTPError(404, "Repository not found", code="RepoNotFound")
        return repo

    # -------------------------------------------------------------- endpoints

    def _whoami(self):
        user = self.user
        if user is None:
            raise HubHTTPError(401, INVALID_CREDENTIALS)
        role = "read" if self._bearer_token() in self.hub.read_only_tokens else "write"
        return 200, {}, {
            "type": "user",
            "id": hashlib.sha1(user.encode()).hexdigest()[:24],
            "name": user,
            "fullname": user.title(),
            "isPro": False,
            "canPay": False,
            "orgs": [{"type": "org", "name": org} for org in self.hub.orgs.get(user, [])],
            "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": role}},
        }

    def _create_repo(self):
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        name = payload.get("name") or ""
        user = self._require_user()
        namespace = payload.get("organization") or user
        if repo_type not in REPO_TYPES:
            raise HubHTTPError(400, f"Invalid repo type '{repo_type}'")
        if not _NAME_RE.match(name) or not _NAME_RE.match(namespace) or "--" in name or ".." in name:
            raise HubHTTPError(400, f"Invalid repo name '{namespace}/{name}'")
        self._require_write(namespace, f"create a {repo_type} repo")
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise HubHTTPError(400, f"Invalid or missing Space sdk: {sdk!r}")
        repo_id = f"{namespace}/{name}"
        url = self._repo_url(repo_type, repo_id)
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                # The real Hub sends the url along: create_repo(exist_ok=True) returns it.
                raise HubHTTPError(409, f"You already created this {repo_type} repo", body={"url": url})
            repo = Repo(repo_type, repo_id, private=payload.get("visibility") == "private", sdk=sdk)
            self.hub.repos[(repo_type, repo_id)] = repo
            initial = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            self.hub._append_commit(repo, "initial commit", initial)
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _delete_repo(self):
        payload = self._json_body()
        user = self._require_user()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload.get('name')}"
        self._require_write(namespace, f"delete a {repo_type} repo")
        with self.hub.lock:
            if self.hub.repos.pop((repo_type, repo_id), None) is None:
                raise HubHTTPError(404, "Repository not found", code="RepoNotFound")
            if self.hub.mirror_dir is not None:
                shutil.rmtree(self.hub.mirror_path(repo_id, repo_type), ignore_errors=True)
        return 200, {}, {}

    def _validate_yaml(self):
        payload = self._json_body()
        try:
            card_metadata((payload.get("content") or "").encode())
        except (ValueError, yaml.YAMLError) as err:
            return 400, {}, {"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def _list_repos(self, repo_type: str):
        author = (self.query.get("author") or [None])[0]
        search = (self.query.get("search") or [None])[0]
        filters = self.query.get("filter") or []
        full = (self.query.get("full") or ["false"])[0].lower() in ("1", "true")
        limit = int((self.query.get("limit") or ["1000"])[0])
        items = []
        with self.hub.lock:
            repos = [r for r in self.hub.repos.values() if r.repo_type == repo_type]
            for repo in sorted(repos, key=lambda r: r.repo_id):
                if author and repo.namespace != author:
                    continue
                if search and search.lower() not in repo.repo_id.lower():
                    continue
                if repo.private and not (self.user and self.hub._can_write(self.user, repo.namespace)):
                    continue
                info = self._info_dict(repo, repo.head, siblings=full)
                if filters and not set(filters) <= set(info.get("tags", [])):
                    continue
                items.append(info)
        return 200, {}, items[:limit]

    def _repo_info(self, repo_type: str, repo_id: str, revision: str):
        with self.hub.lock:
            repo = self._visible_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            blobs = (self.query.get("blobs") or ["false"])[0].lower() in ("1", "true")
            return 200, {}, self._info_dict(repo, commit, siblings=True, blobs=blobs)

    def _tree(self, repo_type: str, repo_id: str, revision: str, path_in_repo: str):
        recursive = (self.query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        with self.hub.lock:
            repo = self._visible_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            entries = _tree_entries(commit.files, path_in_repo.strip("/"), recursive)
        if entries is None:
            raise HubHTTPError(404, f"{path_in_repo} does not exist on \"{revision}\"", code="EntryNotFound")
        return 200, {}, entries

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        payload = self._json_body()
        with self.hub.lock:
            repo = self._visible_repo(repo_type, repo_id)
            self._require_write(repo.namespace, f"write to {repo_id}")
            commit = self._commit_at(repo, revision)
            files = []
            for item in payload.get("files", []):
                existing = commit.files.get(item["path"])
                files.append({
                    "path": item["path"],
                    # Always "regular": the fake accepts every file inline in the commit, so the
                    # client never needs the LFS batch API or Xet storage.
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                })
        return 200, {}, {"files": files, "commitOid": commit.oid}

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        lines = [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]
        if (self.query.get("create_pr") or ["0"])[0] == "1":
            raise HubHTTPError(400, "create_pr is not supported by the fake Hub")
        with self.hub.lock:
            repo = self._visible_repo(repo_type, repo_id)
            self._require_write(repo.namespace, f"write to {repo_id}")
            if revision != "main":
                raise HubHTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            files = dict(repo.head.files)
            header = {}
            for line in lines:
                key, value = line.get("key"), line.get("value") or {}
                if key == "header":
                    header = value
                elif key == "file":
                    if value.get("encoding") != "base64":
                        raise HubHTTPError(400, f"Unsupported encoding for {value.get('path')}")
                    files[_clean_path(value["path"])] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(_clean_path(value["path"]), None) is None:
                        raise HubHTTPError(404, "A file with this name doesn't exist", code="EntryNotFound")
                elif key == "deletedFolder":
                    prefix = _clean_path(value["path"]).rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    raise HubHTTPError(400, f"LFS files are not supported by the fake Hub: {value.get('path')}")
                else:
                    raise HubHTTPError(400, f"Unknown commit operation {key!r}")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.head.oid:
                raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
            if not header.get("summary"):
                raise HubHTTPError(400, "Commit summary is required")
            commit = self.hub._append_commit(repo, header["summary"], files)
        url = f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}"
        answer = {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None}
        return 200, {}, answer

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path_in_repo: str):
        revision, path_in_repo = unquote(revision), unquote(path_in_repo)
        with self.hub.lock:
            repo = self._visible_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            content = commit.files.get(path_in_repo)
        if content is None:
            raise HubHTTPError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_sha1(content)}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        start = _range_start(self.headers.get("Range"))
        if start and start < len(content):
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
            return 206, headers, content[start:]
        return 200, headers, content

    # -------------------------------------------------------------- building answers

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.at(revision)
        if commit is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{_PLURAL[repo_type]}/"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{prefix}{repo_id}"

    def _info_dict(self, repo: Repo, commit: Commit, *, siblings: bool, blobs: bool = False) -> dict:
        try:
            meta = card_metadata(commit.files.get("README.md"))
        except (ValueError, yaml.YAMLError):
            meta = {}
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "likes": 0,
            "tags": _card_tags(meta),
            "cardData": meta or None,
        }
        if repo.repo_type == "model":
            info.update(modelId=repo.repo_id, downloads=0, library_name=meta.get("library_name"))
            if meta.get("pipeline_tag"):
                info["pipeline_tag"] = meta["pipeline_tag"]
        elif repo.repo_type == "dataset":
            info.update(downloads=0)
        else:
            info.update(sdk=repo.sdk, runtime={"stage": "BUILDING", "hardware": {"current": None, "requested": None}})
        if siblings:
            info["siblings"] = [
                {"rfilename": p, **({"size": len(c), "blobId": git_blob_sha1(c)} if blobs else {})}
                for p, c in sorted(commit.files.items())
            ]
        return info

    def _error(self, err: HubHTTPError) -> tuple[int, dict, dict]:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        return err.status, headers, {"error": err.message, **err.body}

    def _send(self, method: str, status: int, headers: dict, payload) -> None:
        if isinstance(payload, (bytes, bytearray)):
            body = bytes(payload)
        else:
            body = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json; charset=utf-8", **headers}
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    # -------------------------------------------------------------- request bodies

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise HubHTTPError(400, f"Invalid JSON body: {err}") from None
        if not isinstance(data, dict):
            raise HubHTTPError(400, "JSON body must be an object")
        return data


def _clean_path(path: str) -> str:
    """Reject paths that would escape the repo (and the mirror folder on disk)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not path or path.startswith("./"):
        raise HubHTTPError(400, f"Invalid path in repo: {path!r}")
    return str(pure)


def _range_start(value: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", value or "")
    return int(match.group(1)) if match else 0


def _tree_entries(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict] | None:
    """Tree listing as the Hub returns it: files and folders under ``prefix``, sorted by path."""
    base = f"{prefix}/" if prefix else ""
    under = {p: c for p, c in files.items() if p.startswith(base)}
    if prefix and not under:
        return None
    entries: dict[str, dict] = {}
    for path, content in under.items():
        parts = path[len(base):].split("/")
        for depth in range(1, len(parts)):  # folders on the way
            if not recursive and depth > 1:
                break
            folder = base + "/".join(parts[:depth])
            oid = hashlib.sha1(f"tree:{folder}".encode()).hexdigest()
            entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
        if recursive or len(parts) == 1:
            entries[path] = {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path}
    return [entries[p] for p in sorted(entries)]


# ---------------------------------------------------------------------- pytest helper


def serve_fake_hub(monkeypatch, tmp_path: Path, tokens: dict[str, str], **kwargs) -> FakeHub:
    """Start a FakeHub for one test and point this process's Hub settings at it.

    Sets ``HF_ENDPOINT`` to the server, ``HF_HOME``/``HF_HUB_CACHE`` under ``tmp_path``, removes ``HF_TOKEN``
    and turns off offline mode (env and huggingface_hub's import-time constant). Call ``hub.stop()`` at the
    end, or use the ``fake_hub`` fixture pattern::

        @pytest.fixture
        def hub(monkeypatch, tmp_path):
            hub = serve_fake_hub(monkeypatch, tmp_path, {"hf_alice_token": "alice"})
            yield hub
            hub.stop()
    """
    from huggingface_hub import constants

    hub = FakeHub(tokens, mirror_dir=kwargs.pop("mirror_dir", tmp_path / "hub_mirror"), **kwargs).start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    return hub
