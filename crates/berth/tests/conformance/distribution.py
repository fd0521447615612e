#!/usr/bin/env python3
"""A standalone checker for the OCI distribution spec.

It re-expresses, one check for one check, the Ginkgo conformance suite of
opencontainers/distribution-spec (conformance/: setup.go, 01_pull_test.go,
02_push_test.go, 03_discovery_test.go, 04_management_test.go, image.go),
with all four workflows on, as OCI_TEST_PULL=1 OCI_TEST_PUSH=1
OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 would turn them on.
The suite itself is Go and needs its module proxy; this needs only Python 3's
standard library.

Usage:
    distribution.py BASE_URL [--namespace NAME] [--crossmount-namespace NAME]
                             [--user U --password P] [-v]

What the suite's client (reggie on resty on net/http) puts on the wire is
reproduced where it can decide a check:
  * the order of the checks, and the state one check leaves to the next (a
    check stops at its first failed expectation, so what it would have stored
    after that point stays as it was);
  * a Content-Length header a check sets is not what is sent: net/http sends
    the length of the body actually attached (0 for a PUT that carries none);
    a GET's body is dropped (resty sends no payload with GET);
  * an upload Location is used by its path and query only (reggie's
    GetRelativeLocation), sent to BASE_URL; query parameters the check adds
    are appended to the Location's own query, sorted by name;
  * redirects are followed (up to 20) with net/http's rules;
  * authentication happens per request as reggie does it: the request goes
    out without credentials and, on a 401 with a WWW-Authenticate challenge,
    is sent again with Basic credentials, or with a Bearer token fetched from
    the challenge's realm (service, scope from the challenge or
    OCI_AUTH_SCOPE) with Basic credentials;
  * JSON bodies are read with encoding/json's rules for the Go types the
    suite decodes into (a field of the wrong JSON type is an error);
  * manifests and configs are serialised as json.MarshalIndent(v, "", "\\t")
    serialises the suite's structs (field order, omitempty, []byte as base64,
    a nil []byte as null).

The environment variables the suite reads that change what it checks are
honoured too: OCI_DELETE_MANIFEST_BEFORE_BLOBS, OCI_AUTOMATIC_CROSSMOUNT,
OCI_AUTH_SCOPE (and OCI_NAMESPACE, OCI_CROSSMOUNT_NAMESPACE, OCI_USERNAME,
OCI_PASSWORD as defaults for the options).

Output: one line per check, `ok N - NAME`, `ok N - NAME # SKIP why`, or
`not ok N - NAME: what was expected, what came back`, NAME being the
workflow, the context and the text of the suite's g.Specify joined by " / ";
then `# passed P failed F skipped S`. The exit status is 1 when a check
failed.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import sys
import urllib.parse
import uuid

USER_AGENT = "distribution-spec-conformance-tests"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_MT = "application/vnd.oci.empty.v1+json"
OCTET = "application/octet-stream"

TEST_TAG_NAME = "tagtest0"
EMPTY_LAYER_TEST_TAG = "emptylayer"
ARTIFACT_TYPE_FILTER = "artifactType"
NUM_WORKFLOWS = 16  # the suite's const numWorkflows is 1 << 4

ERROR_CODES = [
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED",
    "UNSUPPORTED",
]

# The gzipped tarball the suite uses as its one layer (a single test.txt).
LAYER_B64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)

S2XX = frozenset(range(200, 300))


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Go encoding/json, as far as the suite relies on it
# --------------------------------------------------------------------------

def go_marshal_indent(obj):
    """json.MarshalIndent(obj, "", "\\t") for the dicts built below (their
    insertion order is the Go struct's field order)."""
    text = json.dumps(obj, indent="\t", separators=(",", ": "), ensure_ascii=False)
    # encoding/json escapes these in strings; they only occur inside strings.
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def b64(data):
    return base64.b64encode(data).decode("ascii")


class _Obj(list):
    """A JSON object, kept as its (key, value) pairs in order."""


def _reject_constant(name):
    raise ValueError("invalid character in JSON: " + name)


# Schemas for the Go types the suite decodes into.
STR, INT, ANY, BYTES = "string", "int64", "interface{}", "[]byte"


def LIST(t):
    return ("slice", t)


def MAP(t):
    return ("map", t)


def STRUCT(**fields):
    return ("struct", fields)


def PTR(t):
    return t  # a pointer to a struct decodes like the struct


PLATFORM = STRUCT(architecture=STR, os=STR, **{"os.version": STR, "os.features": LIST(STR)},
                  variant=STR)
DESCRIPTOR = STRUCT(mediaType=STR, digest=STR, size=INT, urls=LIST(STR), annotations=MAP(STR),
                    data=BYTES, platform=PTR(PLATFORM), artifactType=STR,
                    newUnspecifiedField=BYTES)
INDEX = STRUCT(schemaVersion=INT, mediaType=STR, artifactType=STR, manifests=LIST(DESCRIPTOR),
               subject=PTR(DESCRIPTOR), annotations=MAP(STR))
TAG_LIST = STRUCT(name=STR, tags=LIST(STR))
ERROR_RESPONSE = STRUCT(errors=LIST(STRUCT(code=STR, message=STR, detail=ANY)))


def _jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, _Obj):
        return "object"
    return "array"


def _decode(schema, v, errs, where):
    """Decode the parsed JSON value v into Go-like Python values (None for a
    zero value), recording type errors as encoding/json would return them."""
    if v is None:
        return None  # null leaves the Go value at its zero value, no error
    if schema == ANY:
        return _plain(v)
    if schema == STR:
        if isinstance(v, str):
            return v
        errs.append("cannot unmarshal %s into Go value of type string (%s)" % (_jtype(v), where))
        return None
    if schema == INT:
        if isinstance(v, int) and not isinstance(v, bool) and -(2 ** 63) <= v < 2 ** 63:
            return v
        errs.append("cannot unmarshal %s %r into Go value of type int64 (%s)" % (_jtype(v), v, where))
        return None
    if schema == BYTES:
        if isinstance(v, str):
            try:
                return base64.b64decode(v.replace("\r", "").replace("\n", ""), validate=True)
            except ValueError:
                errs.append("illegal base64 data (%s)" % where)
                return None
        errs.append("cannot unmarshal %s into Go value of type []uint8 (%s)" % (_jtype(v), where))
        return None
    kind, inner = schema
    if kind == "slice":
        if isinstance(v, list) and not isinstance(v, _Obj):
            return [_decode(inner, x, errs, "%s[%d]" % (where, i)) for i, x in enumerate(v)]
        errs.append("cannot unmarshal %s into Go value of type slice (%s)" % (_jtype(v), where))
        return None
    if kind == "map":
        if isinstance(v, _Obj):
            return {k: _decode(inner, x, errs, "%s.%s" % (where, k)) for k, x in v}
        errs.append("cannot unmarshal %s into Go value of type map (%s)" % (_jtype(v), where))
        return None
    if kind == "struct":
        if not isinstance(v, _Obj):
            errs.append("cannot unmarshal %s into Go struct (%s)" % (_jtype(v), where))
            return None
        out = {}
        for k, x in v:
            field = k if k in inner else next(
                (f for f in inner if f.casefold() == k.casefold()), None)
            if field is None:
                continue  # unknown fields are ignored
            val = _decode(inner[field], x, errs, "%s.%s" % (where, field))
            if isinstance(val, dict) and isinstance(out.get(field), dict) and inner[field][0] == "map":
                out[field].update(val)  # a map is decoded into, not replaced
            elif val is not None or field not in out:
                out[field] = val
        return out
    raise AssertionError(schema)


def _plain(v):
    if isinstance(v, _Obj):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def go_unmarshal(body, schema):
    """json.Unmarshal(body, &x) for x of the given type: (value, error)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text, object_pairs_hook=_Obj, parse_constant=_reject_constant)
    except ValueError as e:
        return None, "invalid JSON: %s" % (e if text.strip() else "unexpected end of JSON input")
    errs = []
    val = _decode(schema, parsed, errs, "body")
    if errs:
        return val or {}, "json: " + errs[0]
    return val or {}, None


def get_tag_list(resp):
    """The suite's getTagList: the tags, or [] when the body does not decode."""
    val, err = go_unmarshal(resp.body, TAG_LIST)
    if err:
        return []
    return val.get("tags") or []


def resp_errors(resp):
    """reggie's Response.Errors(): the errors array, or an error."""
    val, err = go_unmarshal(resp.body.strip(), ERROR_RESPONSE)
    if err:
        return None, err
    errors = val.get("errors") or []
    if not errors:
        return None, "body was valid json but could not be parsed"
    return [e or {} for e in errors], None


# --------------------------------------------------------------------------
# Test content (setup.go)
# --------------------------------------------------------------------------

def descriptor(media_type, digest, size, annotations=None, data=None, artifact_type=None,
               new_unspecified=None):
    d = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = annotations
    if data:
        d["data"] = b64(data)
    if artifact_type:
        d["artifactType"] = artifact_type
    d["newUnspecifiedField"] = None if new_unspecified is None else b64(new_unspecified)
    return d


def manifest(config, layers, media_type=MANIFEST_MT, artifact_type=None, subject=None,
             annotations=None):
    m = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = media_type
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config
    m["layers"] = layers
    if subject is not None:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return m


def index(manifests, media_type=INDEX_MT, artifact_type=None, subject=None, annotations=None):
    m = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = media_type
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = manifests
    if subject is not None:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return m


class Blob:
    def __init__(self, content, digest=None):
        self.content = content
        self.length = str(len(content))
        self.digest = digest or digest_of(content)


def random_string(n):
    letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
    return "".join(secrets.choice(letters) for _ in range(n))


class Fixture:
    def __init__(self):
        env_blob = os.environ.get("OCI_BLOB_DIGEST", "")
        env_manifest = os.environ.get("OCI_MANIFEST_DIGEST", "")
        # a config per workflow, made unique by a random author
        self.configs = []
        for _ in range(NUM_WORKFLOWS):
            cfg = {"author": random_string(16), "architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": []}}
            self.configs.append(Blob(go_marshal_indent(cfg), env_blob or None))

        self.layer = Blob(base64.b64decode(LAYER_B64))
        layers = [descriptor(LAYER_MT, self.layer.digest, len(self.layer.content))]

        self.manifests = []
        for i in range(NUM_WORKFLOWS):
            c = self.configs[i]
            m = manifest(descriptor(CONFIG_MT, c.digest, len(c.content), data=c.content,
                                    new_unspecified=b"hello world"), layers)
            self.manifests.append(Blob(go_marshal_indent(m), env_manifest or None))

        # used in the push test: no mediaType, no layers
        c1 = self.configs[1]
        self.empty_layer_manifest = Blob(go_marshal_indent(manifest(
            descriptor(CONFIG_MT, c1.digest, len(c1.content), data=c1.content,
                       new_unspecified=b"hello world"), [], media_type=None)))

        self.nonexistent_manifest = ".INVALID_MANIFEST_NAME"
        self.invalid_manifest_content = b"blablabla"

        self.blob_a = Blob(os.urandom(42))
        self.setup_chunked_blob(42)

        # referrers content
        self.empty_json = Blob(b"{}")
        empty_desc = descriptor(EMPTY_MT, self.empty_json.digest, len(self.empty_json.content))
        self.empty_json_desc_digest = self.empty_json.digest
        self.ref_blob_a = Blob(b"NHL Peanut Butter on my NHL bagel")
        self.ref_type_a = "application/vnd.nhl.peanut.butter.bagel"
        self.ref_blob_b = Blob(b"NBA Strawberry Jam on my NBA croissant")
        self.ref_type_b = "application/vnd.nba.strawberry.jam.croissant"
        self.ann_key = "org.opencontainers.conformance.test"
        self.ann_values = {}

        m4, m3 = self.manifests[4].content, self.manifests[3].content
        subject4 = descriptor(MANIFEST_MT, digest_of(m4), len(m4))
        subject3 = descriptor(MANIFEST_MT, digest_of(m3), len(m3))

        def artifact(ann, **kw):
            blob = Blob(go_marshal_indent(manifest(annotations={self.ann_key: ann} if ann else None,
                                                   **kw)))
            if ann:
                self.ann_values[blob.digest] = ann
            return blob

        ra, rb = self.ref_blob_a, self.ref_blob_b
        self.refs_a_config = artifact(
            "test config a", config=descriptor(self.ref_type_a, ra.digest, len(ra.content)),
            layers=[empty_desc], subject=subject4)
        self.refs_b_config = artifact(
            "test config b", config=descriptor(self.ref_type_b, rb.digest, len(rb.content)),
            layers=[empty_desc], subject=subject4)
        self.refs_a_layer = artifact(
            "test layer a", artifact_type=self.ref_type_a, config=empty_desc,
            layers=[descriptor(self.ref_type_a, ra.digest, len(ra.content))], subject=subject4)
        self.refs_b_layer = artifact(
            "test layer b", artifact_type=self.ref_type_b, config=empty_desc,
            layers=[descriptor(self.ref_type_b, rb.digest, len(rb.content))], subject=subject4)
        # same as B, on a subject that is never pushed
        self.refs_c_layer = artifact(
            None, artifact_type=self.ref_type_b, config=empty_desc,
            layers=[descriptor(self.ref_type_b, rb.digest, len(rb.content))], subject=subject3)

        self.ref_type_index = "application/vnd.food.stand"
        idx = index([descriptor(MANIFEST_MT, self.refs_a_config.digest,
                                len(self.refs_a_config.content)),
                     descriptor(MANIFEST_MT, self.refs_a_layer.digest,
                                len(self.refs_a_layer.content))],
                    artifact_type=self.ref_type_index, subject=subject4,
                    annotations={self.ann_key: "test index"})
        self.refs_index = Blob(go_marshal_indent(idx))
        self.ann_values[self.refs_index.digest] = "test index"

        self.dummy_digest = digest_of(b"hello world")

    def setup_chunked_blob(self, size):
        data = os.urandom(size)
        self.blob_b = Blob(data)
        half = size // 2 + 1
        self.chunk1 = data[:half]
        self.chunk2 = data[half:]
        self.chunk1_length = str(len(self.chunk1))
        self.chunk2_length = str(len(self.chunk2))
        self.chunk1_range = "0-%d" % (len(self.chunk1) - 1)
        self.chunk2_range = "%d-%d" % (len(self.chunk1), len(data) - 1)


# --------------------------------------------------------------------------
# HTTP client (reggie's behaviour)
# --------------------------------------------------------------------------

class TransportError(Exception):
    pass


def _go_path(raw):
    """The path as net/http puts it on the request line: a validly escaped
    path goes as it is, other bytes are percent-escaped."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "-._~!$&'()*+,;=:@/[]")
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "%" and re.match(r"%[0-9A-Fa-f]{2}", raw[i:i + 3]):
            out.append(raw[i:i + 3])
            i += 3
            continue
        if ch in allowed:
            out.append(ch)
        else:
            out.append(urllib.parse.quote(ch, safe=""))
        i += 1
    return "".join(out)


class Response:
    def __init__(self, method, url, status, reason, headers, body):
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        """Header().Get(name): the first value, or ""."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v.strip()
        return ""

    def relative_location(self):
        """reggie's GetRelativeLocation: the Location's path and query."""
        loc = self.header("Location")
        try:
            u = urllib.parse.urlsplit(loc)
        except ValueError:
            return ""
        if re.search(r"%(?![0-9A-Fa-f]{2})", u.path):
            return ""  # url.Parse fails on a bad escape
        path = urllib.parse.unquote(u.path)
        if u.query:
            path += "?" + u.query
        return path

    def absolute_location(self):
        return self.header("Location")

    def summary(self):
        u = urllib.parse.urlsplit(self.url)
        target = u.path + ("?" + u.query if u.query else "")
        parts = ["%s %s -> %d %s" % (self.method, target, self.status, self.reason)]
        shown = []
        for name in ("Location", "Range", "Content-Type", "Docker-Content-Digest",
                     "OCI-Subject", "OCI-Filters-Applied", "OCI-Chunk-Min-Length",
                     "WWW-Authenticate"):
            v = self.header(name)
            if v:
                shown.append("%s: %s" % (name, v))
        if shown:
            parts.append("[" + "; ".join(shown) + "]")
        if self.body:
            text = self.body[:300].decode("utf-8", errors="replace").strip()
            if len(self.body) > 300:
                text += "..."
            parts.append("body %s" % json.dumps(text))
        return " ".join(parts)


class Request:
    def __init__(self, method, url, invalid):
        self.method = method
        self.url = url
        self.invalid = invalid
        self.headers = []
        self.query = {}
        self.body = None

    def set_header(self, name, value):
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))
        return self

    def set_query(self, name, value):
        self.query[name] = value
        return self

    def set_body(self, body):
        self.body = body
        return self


class Client:
    def __init__(self, base, namespace, user, password, auth_scope, verbose):
        self.base = base.rstrip("/")
        self.namespace = namespace
        self.user = user
        self.password = password
        self.auth_scope = auth_scope
        self.verbose = verbose

    def req(self, method, path, name=None, reference=None, digest=None):
        """reggie's NewRequest: substitute <name>, <reference>, <digest>."""
        ns = name or self.namespace
        for key, val in (("<name>", ns), ("<reference>", reference), ("<digest>", digest)):
            if val:
                path = path.replace(key, val)
        url = "%s/%s" % (self.base, path[1:] if path.startswith("/") else path)
        invalid = re.search(r"<name>|<reference>|<digest>|<session_id>|//{2,}", url) is not None
        return Request(method, url, invalid)

    def do(self, req):
        if req.invalid:
            raise TransportError("request is invalid: %s" % req.url)
        u = urllib.parse.urlsplit(req.url)
        query = u.query
        if req.query:
            enc = urllib.parse.urlencode(sorted(req.query.items()))
            query = query + "&" + enc if query else enc
        url = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, query, ""))
        body = req.body
        if req.method in ("GET", "HEAD", "OPTIONS"):
            body = None  # resty sends no payload with these
        headers = [(k, v) for k, v in req.headers if k.lower() != "content-length"]
        resp = self._send_following(req.method, url, headers, body)
        if resp.status == 401:
            resp = self._retry_with_auth(req.method, url, headers, body, resp)
        return resp

    def _retry_with_auth(self, method, url, headers, body, resp):
        challenge = resp.header("WWW-Authenticate")
        if not challenge:
            return resp
        m = re.match(r"(?is).*(bearer|basic).*", challenge)
        kind = m.group(1).lower() if m else ""
        basic = "Basic " + b64(("%s:%s" % (self.user, self.password)).encode())
        if kind == "bearer":
            params = dict((k.lower(), v) for k, v in re.findall(r'([a-zA-z]+)="(.+?)"', challenge))
            q = {"service": params.get("service", "")}
            scope = self.auth_scope or params.get("scope", "")
            if scope:
                q["scope"] = scope
            realm = params.get("realm", "")
            ru = urllib.parse.urlsplit(realm)
            rq = ru.query
            enc = urllib.parse.urlencode(sorted(q.items()))
            rq = rq + "&" + enc if rq else enc
            token_url = urllib.parse.urlunsplit((ru.scheme, ru.netloc, ru.path, rq, ""))
            tok = self._send_following("GET", token_url, [
                ("Accept", "application/json"), ("Authorization", basic)], None)
            try:
                info = json.loads(tok.body.decode("utf-8", errors="replace"))
            except ValueError as e:
                raise TransportError("token response from %s is not JSON: %s (%s)"
                                     % (realm, e, tok.summary()))
            token = ""
            if isinstance(info, dict):
                token = info.get("token") or info.get("access_token") or ""
            auth = "Bearer " + token if isinstance(token, str) and token else None
        elif kind == "basic":
            auth = basic
        else:
            raise TransportError("something went wrong with authorization (%s)" % challenge)
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        if auth:  # resty sets no header for an empty token
            headers.append(("Authorization", auth))
        return self._send_following(method, url, headers, body)

    def _send_following(self, method, url, headers, body):
        """net/http's Client.Do with resty's FlexibleRedirectPolicy(20)."""
        via = 0
        first_host = urllib.parse.urlsplit(url).netloc
        while True:
            resp = self._send(method, url, headers, body)
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            loc = resp.header("Location")
            if not loc:
                return resp
            if resp.status in (307, 308):
                pass  # method and body kept (resty's []byte body can be replayed)
            else:
                if method not in ("GET", "HEAD"):
                    method = "GET"
                body = None
            via += 1
            if via >= 20:
                raise TransportError("stopped after 20 redirects")
            url = urllib.parse.urljoin(url, loc)
            if urllib.parse.urlsplit(url).netloc != first_host:
                headers = [(k, v) for k, v in headers
                           if k.lower() not in ("authorization", "www-authenticate", "cookie")]

    def _send(self, method, url, headers, body):
        u = urllib.parse.urlsplit(url)
        try:
            if u.scheme == "https":
                conn = http.client.HTTPSConnection(
                    u.hostname, u.port or 443, timeout=120,
                    context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120)
            target = _go_path(u.path or "/") + ("?" + u.query if u.query else "")
            conn.putrequest(method, target, skip_accept_encoding=True)
            conn.putheader("User-Agent", USER_AGENT)
            for k, v in headers:
                if k.lower() != "user-agent":
                    conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            elif method not in ("GET", "HEAD"):
                conn.putheader("Content-Length", "0")
            conn.endheaders()
            if body:
                conn.send(body)
            r = conn.getresponse()
            data = r.read() if method != "HEAD" else b""
            resp = Response(method, url, r.status, r.reason, r.getheaders(), data)
            conn.close()
        except (OSError, http.client.HTTPException, socket.timeout) as e:
            raise TransportError("%s %s: %s" % (method, url, e))
        if self.verbose:
            sys.stderr.write(">>> %s %s %s\n" % (method, target, headers))
            if body:
                sys.stderr.write(">>> body %d bytes\n" % len(body))
            sys.stderr.write("<<< %s\n" % resp.summary())
        return resp


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------

class Fail(Exception):
    pass


class Skip(Exception):
    pass


def _codes(allowed):
    allowed = set(allowed)
    parts = []
    if S2XX <= allowed:
        parts.append("2xx")
        allowed -= S2XX
    parts += [str(c) for c in sorted(allowed)]
    return " or ".join(parts)


def expect_status(resp, allowed):
    allowed = set(allowed)
    if resp.status not in allowed:
        raise Fail("expected status %s, got %d (%s)" % (_codes(allowed), resp.status,
                                                         resp.summary()))


def expect_location(resp):
    if not resp.header("Location"):
        raise Fail("expected a Location header, got none (%s)" % resp.summary())


def expect_header(resp, name, want):
    got = resp.header(name)
    if got != want:
        raise Fail("expected header %s: %r, got %r (%s)" % (name, want, got, resp.summary()))


def expect(cond, msg, resp=None):
    if not cond:
        raise Fail(msg + (" (%s)" % resp.summary() if resp is not None else ""))


def run_only_if(cond):
    if not cond:
        raise Skip("you have skipped this test.")


def parse_bool(s):
    """strconv.ParseBool, errors read as false."""
    return s in ("1", "t", "T", "TRUE", "true", "True")


class Suite:
    def __init__(self, client, fx, crossmount_ns):
        self.c = client
        self.fx = fx
        self.crossmount = crossmount_ns
        self.warnings = []
        self.run_pull_setup = not (os.environ.get("OCI_TAG_NAME") and
                                   os.environ.get("OCI_MANIFEST_DIGEST") and
                                   os.environ.get("OCI_BLOB_DIGEST"))
        self.run_push_setup = True
        self.run_discovery_setup = not os.environ.get("OCI_TAG_LIST")
        self.run_management_setup = True
        v = os.environ.get("OCI_DELETE_MANIFEST_BEFORE_BLOBS")
        self.delete_manifest_before_blobs = True if v is None else parse_bool(v)
        v = os.environ.get("OCI_AUTOMATIC_CROSSMOUNT")
        self.run_automatic_crossmount = v is not None
        self.automatic_crossmount = parse_bool(v or "")
        # per-workflow state
        self.pull_tag = ""
        self.last = None
        self.prev = None
        self.empty_layer_ref = ""
        self.num_tags = 4
        self.tag_list = []
        self.tag_to_delete = ""
        self.mgmt_num_tags = 0
        self.blob_delete_allowed = True

    def warn(self, msg):
        self.warnings.append(msg)

    # helpers shared by the setups -------------------------------------

    def push_blob(self, blob):
        """POST an upload, then PUT the blob to its Location; 2xx wanted."""
        c = self.c
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/"))
        resp = c.do(c.req("PUT", resp.relative_location())
                    .set_query("digest", blob.digest)
                    .set_header("Content-Type", OCTET)
                    .set_header("Content-Length", blob.length)
                    .set_body(blob.content))
        expect_status(resp, S2XX)
        return resp

    def put_manifest(self, ref, content, media_type=MANIFEST_MT):
        c = self.c
        return c.do(c.req("PUT", "/v2/<name>/manifests/<reference>", reference=ref)
                    .set_header("Content-Type", media_type).set_body(content))

    def delete(self, path, allowed, **kw):
        resp = self.c.do(self.c.req("DELETE", path, **kw))
        expect_status(resp, allowed)

    def plan(self):
        """The checks in the suite's order: (workflow, context, text, fn)."""
        P, PU, D, M = "Pull", "Push", "Content Discovery", "Content Management"
        fx, s = self.fx, self
        out = []

        def add(wf, ctx, text, fn):
            out.append((wf, ctx, text, fn))

        # ---------------- Pull ----------------
        add(P, "Setup", "Populate registry with test blob",
            lambda: (run_only_if(s.run_pull_setup), s.push_blob(fx.configs[0])))
        add(P, "Setup", "Populate registry with test blob",
            lambda: (run_only_if(s.run_pull_setup), s.push_blob(fx.configs[1])))
        add(P, "Setup", "Populate registry with test layer",
            lambda: (run_only_if(s.run_pull_setup), s.push_blob(fx.layer)))
        add(P, "Setup", "Populate registry with test manifest", self.pull_setup_tagged_manifest)
        add(P, "Setup", "Populate registry with test manifest", self.pull_setup_digest_manifest)
        add(P, "Setup", "Get tag name from environment", self.pull_tag_from_env)
        add(P, "Pull blobs", "HEAD request to nonexistent blob should result in 404 response",
            lambda: self.blob_status("HEAD", fx.dummy_digest, {404}))
        add(P, "Pull blobs", "HEAD request to existing blob should yield 200",
            lambda: self.blob_status("HEAD", fx.configs[0].digest, {200}, check_digest=True))
        add(P, "Pull blobs", "GET nonexistent blob should result in 404 response",
            lambda: self.blob_status("GET", fx.dummy_digest, {404}))
        add(P, "Pull blobs", "GET request to existing blob URL should yield 200",
            lambda: self.blob_status("GET", fx.configs[0].digest, {200}))
        add(P, "Pull manifests", "HEAD request to nonexistent manifest should return 404",
            lambda: self.manifest_status("HEAD", fx.nonexistent_manifest, {404}, accept=False))
        add(P, "Pull manifests",
            "HEAD request to manifest[0] path (digest) should yield 200 response",
            lambda: self.manifest_status("HEAD", fx.manifests[0].digest, {200},
                                         want_digest=fx.manifests[0].digest))
        add(P, "Pull manifests",
            "HEAD request to manifest[1] path (digest) should yield 200 response",
            lambda: self.manifest_status("HEAD", fx.manifests[1].digest, {200},
                                         want_digest=fx.manifests[1].digest))
        add(P, "Pull manifests", "HEAD request to manifest path (tag) should yield 200 response",
            lambda: self.manifest_by_tag("HEAD", want_digest=fx.manifests[0].digest))
        add(P, "Pull manifests", "GET nonexistent manifest should return 404",
            lambda: self.manifest_status("GET", fx.nonexistent_manifest, {404}, accept=False))
        add(P, "Pull manifests",
            "GET request to manifest[0] path (digest) should yield 200 response",
            lambda: self.manifest_status("GET", fx.manifests[0].digest, {200}))
        add(P, "Pull manifests",
            "GET request to manifest[1] path (digest) should yield 200 response",
            lambda: self.manifest_status("GET", fx.manifests[1].digest, {200}))
        add(P, "Pull manifests", "GET request to manifest path (tag) should yield 200 response",
            lambda: self.manifest_by_tag("GET"))
        add(P, "Error codes", "400 response body should contain OCI-conforming JSON message",
            self.pull_error_codes)

        def pull_delete(what, path, kw, allowed):
            return lambda: (run_only_if(s.run_pull_setup), s.delete(path, allowed, **kw))

        m0 = ("Delete manifest[0] created in setup", "/v2/<name>/manifests/<digest>",
              {"digest": fx.manifests[0].digest}, S2XX | {405})
        m1 = ("Delete manifest[1] created in setup", "/v2/<name>/manifests/<digest>",
              {"digest": fx.manifests[1].digest}, S2XX | {405})
        blobs = [("Delete config[0] blob created in setup", "/v2/<name>/blobs/<digest>",
                  {"digest": fx.configs[0].digest}, S2XX | {404, 405}),
                 ("Delete config[1] blob created in setup", "/v2/<name>/blobs/<digest>",
                  {"digest": fx.configs[1].digest}, S2XX | {404, 405}),
                 ("Delete layer blob created in setup", "/v2/<name>/blobs/<digest>",
                  {"digest": fx.layer.digest}, S2XX | {404, 405})]
        order = [m0, m1] + blobs if self.delete_manifest_before_blobs else blobs + [m0, m1]
        for text, path, kw, allowed in order:
            add(P, "Teardown", text, pull_delete(text, path, kw, allowed))

        # ---------------- Push ----------------
        add(PU, "Blob Upload Streamed", "PATCH request with blob in body should yield 202 response",
            self.push_streamed_patch)
        add(PU, "Blob Upload Streamed",
            "PUT request to session URL with digest should yield 201 response",
            self.push_streamed_put)
        add(PU, "Blob Upload Monolithic", "GET nonexistent blob should result in 404 response",
            lambda: self.blob_status("GET", fx.dummy_digest, {404}))
        add(PU, "Blob Upload Monolithic", "POST request with digest and blob should yield a 201 or 202",
            self.push_post_with_digest)
        add(PU, "Blob Upload Monolithic",
            "GET request to blob URL from prior request should yield 200 or 404 based on response code",
            self.push_get_after_post)
        add(PU, "Blob Upload Monolithic", "POST request should yield a session ID",
            self.push_post_session)
        add(PU, "Blob Upload Monolithic", "PUT upload of a blob should yield a 201 Response",
            self.push_put_blob)
        add(PU, "Blob Upload Monolithic", "GET request to existing blob should yield 200 response",
            lambda: self.blob_status("GET", fx.configs[1].digest, {200}))
        add(PU, "Blob Upload Monolithic", "PUT upload of a layer blob should yield a 201 Response",
            self.push_put_layer)
        add(PU, "Blob Upload Monolithic", "GET request to existing layer should yield 200 response",
            lambda: self.blob_status("GET", fx.layer.digest, {200}))
        add(PU, "Blob Upload Chunked", "Out-of-order blob upload should return 416",
            self.push_out_of_order)
        add(PU, "Blob Upload Chunked", "PATCH request with first chunk should return 202",
            self.push_first_chunk)
        add(PU, "Blob Upload Chunked", "Retry previous blob chunk should return 416",
            self.push_retry_chunk)
        add(PU, "Blob Upload Chunked",
            "Get on stale blob upload should return 204 with a range and location",
            self.push_stale_status)
        add(PU, "Blob Upload Chunked", "PATCH request with second chunk should return 202",
            self.push_second_chunk)
        add(PU, "Blob Upload Chunked", "PUT request with digest should return 201",
            self.push_close_chunked)
        add(PU, "Cross-Repository Blob Mount",
            "Cross-mounting of a blob without the from argument should yield session id",
            self.mount_without_from)
        add(PU, "Cross-Repository Blob Mount",
            "POST request to mount another repository's blob should return 201 or 202",
            self.mount_from)
        add(PU, "Cross-Repository Blob Mount",
            "GET request to test digest within cross-mount namespace should return 200",
            self.mount_get)
        add(PU, "Cross-Repository Blob Mount",
            "Cross-mounting of nonexistent blob should yield session id",
            self.mount_session)
        add(PU, "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            lambda: self.mount_automatic(True))
        add(PU, "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
            lambda: self.mount_automatic(False))
        add(PU, "Manifest Upload", "GET nonexistent manifest should return 404",
            lambda: self.manifest_status("GET", fx.nonexistent_manifest, {404}, accept=False))
        add(PU, "Manifest Upload", "PUT should accept a manifest upload", self.push_manifests)
        add(PU, "Manifest Upload", "Registry should accept a manifest upload with no layers",
            self.push_empty_layer_manifest)
        add(PU, "Manifest Upload", "GET request to manifest URL (digest) should yield 200 response",
            lambda: self.manifest_status("GET", fx.manifests[1].digest, {200}))
        push_m = ("Delete manifest created in tests", self.push_delete_manifest)
        push_b = [("Delete config blob created in tests",
                   lambda: (run_only_if(s.run_push_setup),
                            s.delete("/v2/<name>/blobs/<digest>", S2XX | {404, 405},
                                     digest=fx.configs[1].digest))),
                  ("Delete layer blob created in setup",
                   lambda: (run_only_if(s.run_push_setup),
                            s.delete("/v2/<name>/blobs/<digest>", S2XX | {404, 405},
                                     digest=fx.layer.digest)))]
        for text, fn in ([push_m] + push_b if self.delete_manifest_before_blobs
                         else push_b + [push_m]):
            add(PU, "Teardown", text, fn)

        # ---------------- Content Discovery ----------------
        add(D, "Setup", "Populate registry with test blob",
            lambda: (run_only_if(s.run_discovery_setup), s.push_blob(fx.configs[2])))
        add(D, "Setup", "Populate registry with test layer",
            lambda: (run_only_if(s.run_discovery_setup), s.push_blob(fx.layer)))
        add(D, "Setup", "Populate registry with test tags", self.discovery_tags)
        add(D, "Setup", "Populate registry with test tags (no push)", self.discovery_tags_env)
        add(D, "Setup", "References setup", self.references_setup)
        add(D, "Test content discovery endpoints (listing tags)",
            "GET request to list tags should yield 200 response", self.list_tags)
        add(D, "Test content discovery endpoints (listing tags)",
            "GET number of tags should be limitable by `n` query parameter", self.list_tags_n)
        add(D, "Test content discovery endpoints (listing tags)",
            "GET start of tag is set by `last` query parameter", self.list_tags_last)
        add(D, "Test content discovery endpoints (listing references)",
            "GET request to nonexistent blob should result in empty 200 response",
            self.referrers_none)
        add(D, "Test content discovery endpoints (listing references)",
            "GET request to existing blob should yield 200", self.referrers_all)
        add(D, "Test content discovery endpoints (listing references)",
            "GET request to existing blob with filter should yield 200", self.referrers_filtered)
        add(D, "Test content discovery endpoints (listing references)",
            "GET request to missing manifest should yield 200", self.referrers_missing_subject)
        disc_m = ("Delete created manifest & associated tags", self.discovery_delete_manifests)
        disc_b = [("Delete config blob created in tests",
                   lambda: (run_only_if(s.run_discovery_setup),
                            s.delete("/v2/<name>/blobs/<digest>", S2XX | {405},
                                     digest=fx.configs[2].digest))),
                  ("Delete layer blob created in setup",
                   lambda: (run_only_if(s.run_discovery_setup),
                            s.delete("/v2/<name>/blobs/<digest>", S2XX | {405},
                                     digest=fx.layer.digest)))]
        for text, fn in ([disc_m] + disc_b if self.delete_manifest_before_blobs
                         else disc_b + [disc_m]):
            add(D, "Teardown", text, fn)
        add(D, "Teardown", "References teardown", self.references_teardown)

        # ---------------- Content Management ----------------
        add(M, "Setup", "Populate registry with test config blob",
            lambda: (run_only_if(s.run_management_setup), s.push_blob(fx.configs[3])))
        add(M, "Setup", "Populate registry with test layer",
            lambda: (run_only_if(s.run_management_setup), s.push_blob(fx.layer)))
        add(M, "Setup", "Populate registry with test tag", self.management_tag)
        add(M, "Setup", "Check how many tags there are before anything gets deleted",
            self.management_count_tags)
        add(M, "Manifest delete",
            "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
            self.delete_tag)
        add(M, "Manifest delete",
            "DELETE request to manifest (digest) should yield 202 response unless already deleted",
            lambda: s.delete("/v2/<name>/manifests/<digest>", {202, 404},
                             digest=fx.manifests[3].digest))
        add(M, "Manifest delete",
            "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
            lambda: self.manifest_status("GET", fx.manifests[3].digest, {404, 200}, accept=False))
        add(M, "Manifest delete", "GET request to tags list should reflect manifest deletion",
            self.tags_after_delete)
        add(M, "Blob delete", "DELETE request to blob URL should yield 202 response",
            self.delete_blobs)
        add(M, "Blob delete", "GET request to deleted blob URL should yield 404 response",
            self.get_deleted_blob)
        return out

    # ---------------- Pull ----------------

    def pull_setup_tagged_manifest(self):
        run_only_if(self.run_pull_setup)
        self.pull_tag = TEST_TAG_NAME
        expect_status(self.put_manifest(self.pull_tag, self.fx.manifests[0].content), S2XX)

    def pull_setup_digest_manifest(self):
        run_only_if(self.run_pull_setup)
        m = self.fx.manifests[1]
        expect_status(self.put_manifest(m.digest, m.content), S2XX)

    def pull_tag_from_env(self):
        run_only_if(not self.run_pull_setup)
        if os.environ.get("OCI_TAG_NAME"):
            self.pull_tag = os.environ["OCI_TAG_NAME"]

    def blob_status(self, method, digest, allowed, check_digest=False):
        resp = self.c.do(self.c.req(method, "/v2/<name>/blobs/<digest>", digest=digest))
        expect_status(resp, allowed)
        if check_digest:
            h = resp.header("Docker-Content-Digest")
            if h:
                expect(h == digest, "expected Docker-Content-Digest %s, got %s" % (digest, h), resp)

    def manifest_status(self, method, ref, allowed, accept=True, want_digest=None):
        path = "/v2/<name>/manifests/<digest>" if ref.startswith("sha256:") \
            else "/v2/<name>/manifests/<reference>"
        req = self.c.req(method, path, digest=ref, reference=ref)
        if accept:
            req.set_header("Accept", MANIFEST_MT)
        resp = self.c.do(req)
        expect_status(resp, allowed)
        if want_digest:
            h = resp.header("Docker-Content-Digest")
            if h:
                expect(h == want_digest,
                       "expected Docker-Content-Digest %s, got %s" % (want_digest, h), resp)

    def manifest_by_tag(self, method, want_digest=None):
        expect(self.pull_tag != "", "expected a tag name, got none")
        resp = self.c.do(self.c.req(method, "/v2/<name>/manifests/<reference>",
                                    reference=self.pull_tag).set_header("Accept", MANIFEST_MT))
        expect_status(resp, {200})
        if want_digest:
            h = resp.header("Docker-Content-Digest")
            if h:
                expect(h == want_digest,
                       "expected Docker-Content-Digest %s, got %s" % (want_digest, h), resp)

    def pull_error_codes(self):
        resp = self.c.do(self.c.req("GET", "/v2/<name>/manifests/<reference>",
                                    reference="sha256:totallywrong")
                         .set_header("Content-Type", MANIFEST_MT)
                         .set_body(self.fx.invalid_manifest_content))
        expect_status(resp, {400, 404})
        if resp.status == 400:
            errors, err = resp_errors(resp)
            expect(err is None, "expected an OCI error body, got: %s" % err, resp)
            code = errors[0].get("code") or ""
            expect(code in ERROR_CODES,
                   "expected errors[0].code to be one of the spec's codes, got %r" % code, resp)

    # ---------------- Push ----------------

    def push_streamed_patch(self):
        c = self.c
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/"))
        expect_location(resp)
        resp = c.do(c.req("PATCH", resp.relative_location())
                    .set_header("Content-Type", OCTET).set_body(self.fx.blob_a.content))
        expect_status(resp, {202})
        self.last = resp

    def push_streamed_put(self):
        c = self.c
        expect(self.last is not None, "expected the PATCH's response, got none")
        resp = c.do(c.req("PUT", self.last.relative_location())
                    .set_query("digest", self.fx.blob_a.digest)
                    .set_header("Content-Type", OCTET)
                    .set_header("Content-Length", self.fx.blob_a.length))
        expect_status(resp, {201})
        expect_location(resp)

    def push_post_with_digest(self):
        c, cfg = self.c, self.fx.configs[1]
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/")
                    .set_header("Content-Length", cfg.length)
                    .set_header("Content-Type", OCTET)
                    .set_query("digest", cfg.digest).set_body(cfg.content))
        expect_location(resp)
        expect_status(resp, {201, 202})
        self.last = resp

    def push_get_after_post(self):
        expect(self.last is not None, "expected the POST's response, got none")
        resp = self.c.do(self.c.req("GET", "/v2/<name>/blobs/<digest>",
                                    digest=self.fx.configs[1].digest))
        if self.last.status == 202:
            expect_status(resp, {404})
        else:
            expect_status(resp, {200})

    def push_post_session(self):
        resp = self.c.do(self.c.req("POST", "/v2/<name>/blobs/uploads/"))
        expect_status(resp, {202})
        self.last = resp

    def push_put_blob(self):
        c, cfg = self.c, self.fx.configs[1]
        expect(self.last is not None, "no previous response (nil pointer)")
        resp = c.do(c.req("PUT", self.last.relative_location())
                    .set_header("Content-Length", cfg.length)
                    .set_header("Content-Type", OCTET)
                    .set_query("digest", cfg.digest).set_body(cfg.content))
        expect_location(resp)
        expect_status(resp, {201})

    def push_put_layer(self):
        c, layer = self.c, self.fx.layer
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/"))
        resp = c.do(c.req("PUT", resp.relative_location())
                    .set_header("Content-Length", layer.length)
                    .set_header("Content-Type", OCTET)
                    .set_query("digest", layer.digest).set_body(layer.content))
        expect_location(resp)
        expect_status(resp, {201})

    def push_out_of_order(self):
        c, fx = self.c, self.fx
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/").set_header("Content-Length", "0"))
        expect_location(resp)
        min_size = resp.header("OCI-Chunk-Min-Length")
        if min_size:
            try:
                n = int(min_size, 10)
            except ValueError:
                raise Fail("expected OCI-Chunk-Min-Length to be an integer, got %r" % min_size)
            if n > len(fx.chunk1):
                fx.setup_chunked_blob(n * 2 - 2)
        resp = c.do(c.req("PATCH", resp.relative_location())
                    .set_header("Content-Type", OCTET)
                    .set_header("Content-Length", fx.chunk2_length)
                    .set_header("Content-Range", fx.chunk2_range)
                    .set_body(fx.chunk2))
        expect_status(resp, {416})

    def push_first_chunk(self):
        c, fx = self.c, self.fx
        resp = c.do(c.req("POST", "/v2/<name>/blobs/uploads/").set_header("Content-Length", "0"))
        expect_location(resp)
        self.prev = resp
        resp = c.do(c.req("PATCH", resp.relative_location())
                    .set_header("Content-Type", OCTET)
                    .set_header("Content-Length", fx.chunk1_length)
                    .set_header("Content-Range", fx.chunk1_range)
                    .set_body(fx.chunk1))
        expect_status(resp, {202})
        expect_header(resp, "Range", fx.chunk1_range)
        self.last = resp

    def push_retry_chunk(self):
        c, fx = self.c, self.fx
        expect(self.prev is not None, "no previous response (nil pointer)")
        resp = c.do(c.req("PATCH", self.prev.relative_location())
                    .set_header("Content-Type", OCTET)
                    .set_header("Content-Length", fx.chunk1_length)
                    .set_header("Content-Range", fx.chunk1_range)
                    .set_body(fx.chunk1))
        expect_status(resp, {416})

    def push_stale_status(self):
        expect(self.prev is not None, "no previous response (nil pointer)")
        resp = self.c.do(self.c.req("GET", self.prev.relative_location()))
        expect_status(resp, {204})
        expect_location(resp)
        expect_header(resp, "Range", self.fx.chunk1_range)
        self.last = resp

    def push_second_chunk(self):
        c, fx = self.c, self.fx
        expect(self.last is not None, "no previous response (nil pointer)")
        resp = c.do(c.req("PATCH", self.last.relative_location())
                    .set_header("Content-Length", fx.chunk2_length)
                    .set_header("Content-Range", fx.chunk2_range)
                    .set_header("Content-Type", OCTET)
                    .set_body(fx.chunk2))
        expect_status(resp, {202})
        expect_location(resp)
        self.last = resp

    def push_close_chunked(self):
        c = self.c
        expect(self.last is not None, "no previous response (nil pointer)")
        resp = c.do(c.req("PUT", self.last.relative_location())
                    .set_header("Content-Length", "0")
                    .set_header("Content-Type", OCTET)
                    .set_query("digest", self.fx.blob_b.digest))
        expect_status(resp, {201})
        expect_location(resp)

    def mount_without_from(self):
        resp = self.c.do(self.c.req("POST", "/v2/<name>/blobs/uploads/", name=self.crossmount)
                         .set_query("mount", self.fx.dummy_digest))
        expect_status(resp, {202})
        expect(resp.absolute_location() != "", "expected a Location header, got none", resp)

    def mount_from(self):
        resp = self.c.do(self.c.req("POST", "/v2/<name>/blobs/uploads/", name=self.crossmount)
                         .set_query("mount", self.fx.blob_a.digest)
                         .set_query("from", self.c.namespace))
        expect_status(resp, {201, 202})
        self.last = resp

    def mount_get(self):
        expect(self.last is not None, "no previous response (nil pointer)")
        run_only_if(self.last.status == 201)
        want = "/v2/%s/blobs/%s" % (self.crossmount, self.fx.blob_a.digest)
        got = self.last.relative_location()
        expect(got == want, "expected the mount's Location to be %s, got %r" % (want, got),
               self.last)
        resp = self.c.do(self.c.req("GET", got))
        expect_status(resp, {200})

    def mount_session(self):
        expect(self.last is not None, "no previous response (nil pointer)")
        run_only_if(self.last.status == 202)
        prefix = "/v2/%s/blobs/uploads/" % self.crossmount
        got = self.last.relative_location()
        expect(got.startswith(prefix),
               "expected the mount's Location to start with %s, got %r" % (prefix, got),
               self.last)

    def mount_automatic(self, enabled):
        run_only_if(self.run_automatic_crossmount)
        expect(self.last is not None, "no previous response (nil pointer)")
        run_only_if(self.last.status == 201)
        run_only_if(self.automatic_crossmount == enabled)
        resp = self.c.do(self.c.req("POST", "/v2/<name>/blobs/uploads/", name=self.crossmount)
                         .set_query("mount", self.fx.blob_a.digest))
        expect_status(resp, {201} if enabled else {202})

    def push_manifests(self):
        for i in range(4):
            resp = self.put_manifest("test%d" % i, self.fx.manifests[1].content)
            expect_location(resp)
            expect_status(resp, {201})

    def push_empty_layer_manifest(self):
        resp = self.put_manifest(EMPTY_LAYER_TEST_TAG, self.fx.empty_layer_manifest.content)
        if resp.status == 201:
            self.empty_layer_ref = resp.header("Location")
            expect_location(resp)
        else:
            self.warn("image manifest with no layers is not supported (%s)" % resp.summary())

    def push_delete_manifest(self):
        run_only_if(self.run_push_setup)
        self.delete("/v2/<name>/manifests/<digest>", S2XX | {405},
                    digest=self.fx.manifests[1].digest)
        if self.empty_layer_ref:
            self.delete("/v2/<name>/manifests/<reference>", S2XX | {405},
                        reference=self.fx.empty_layer_manifest.digest)

    # ---------------- Content Discovery ----------------

    def discovery_tags(self):
        run_only_if(self.run_discovery_setup)
        for i in range(self.num_tags):
            tag = "test%d" % i
            self.tag_list.append(tag)
            expect_status(self.put_manifest(tag, self.fx.manifests[2].content), S2XX)
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list"))
        self.tag_list = get_tag_list(resp)

    def discovery_tags_env(self):
        run_only_if(not self.run_discovery_setup)
        self.tag_list = os.environ.get("OCI_TAG_LIST", "").split(",")

    def references_setup(self):
        run_only_if(self.run_discovery_setup)
        fx = self.fx
        want = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        expect(fx.empty_json.digest == want, "empty JSON blob digest is %s" % fx.empty_json.digest)
        m4, m3 = fx.manifests[4].digest, fx.manifests[3].digest

        def put_ref(blob, subject, media_type=MANIFEST_MT):
            resp = self.put_manifest(blob.digest, blob.content, media_type)
            expect_status(resp, S2XX)
            expect_header(resp, "OCI-Subject", subject)

        self.push_blob(fx.empty_json)
        # a reference's blob before the image manifest is pushed
        self.push_blob(fx.ref_blob_a)
        put_ref(fx.refs_a_config, m4)
        put_ref(fx.refs_a_layer, m4)
        put_ref(fx.refs_index, m4, INDEX_MT)
        self.push_blob(fx.configs[4])
        self.push_blob(fx.layer)
        expect_status(self.put_manifest(TEST_TAG_NAME, fx.manifests[4].content), S2XX)
        # and after it
        self.push_blob(fx.ref_blob_b)
        put_ref(fx.refs_b_config, m4)
        put_ref(fx.refs_b_layer, m4)
        # to a subject that does not exist
        put_ref(fx.refs_c_layer, m3)

    def list_tags(self):
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list"))
        expect_status(resp, {200})
        self.tag_list = get_tag_list(resp)
        self.num_tags = len(self.tag_list)

    def list_tags_n(self):
        n = self.num_tags // 2
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list").set_query("n", str(n)))
        expect_status(resp, {200})
        self.tag_list = get_tag_list(resp)
        expect(len(self.tag_list) == n,
               "expected %d tags with n=%d, got %d %r" % (n, n, len(self.tag_list), self.tag_list),
               resp)

    def list_tags_last(self):
        n = self.num_tags // 2
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list").set_query("n", str(n)))
        self.tag_list = get_tag_list(resp)
        i = n - 1
        if not 0 <= i < len(self.tag_list):
            raise Fail("index out of range [%d] with length %d: the n=%d listing gave %r (%s)"
                       % (i, len(self.tag_list), n, self.tag_list, resp.summary()))
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list")
                         .set_query("n", str(n)).set_query("last", self.tag_list[i]))
        expect_status(resp, {200})
        # (the suite checks the first listing again here, which always holds)
        expect(len(self.tag_list) <= n, "expected at most %d tags, got %d" % (n, len(self.tag_list)))

    def referrers(self, digest, query=None):
        req = self.c.req("GET", "/v2/<name>/referrers/<digest>", digest=digest)
        for k, v in (query or {}).items():
            req.set_query(k, v)
        resp = self.c.do(req)
        expect_status(resp, {200})
        expect_header(resp, "Content-Type", INDEX_MT)
        idx, err = go_unmarshal(resp.body, INDEX)
        expect(err is None, "expected an image index, got: %s" % err, resp)
        return resp, [m or {} for m in (idx.get("manifests") or [])]

    def check_annotations(self, resp, manifests):
        for m in manifests:
            ann = m.get("annotations") or {}
            d = m.get("digest") or ""
            expect(len(ann) == 1, "expected 1 annotation on %s, got %r" % (d, ann), resp)
            want = self.fx.ann_values.get(d, "")
            got = ann.get(self.fx.ann_key) or ""
            expect(got == want, "expected annotation %s=%r on %s, got %r"
                   % (self.fx.ann_key, want, d, got), resp)

    def referrers_none(self):
        resp, ms = self.referrers(self.fx.dummy_digest)
        expect(len(ms) == 0, "expected no manifests, got %d" % len(ms), resp)

    def referrers_all(self):
        resp, ms = self.referrers(self.fx.manifests[4].digest)
        expect(len(ms) == 5, "expected 5 manifests, got %d" % len(ms), resp)
        expect(ms[0].get("digest") != ms[1].get("digest"),
               "expected manifests[0] and [1] to differ", resp)
        self.check_annotations(resp, ms)

    def referrers_filtered(self):
        resp, ms = self.referrers(self.fx.manifests[4].digest,
                                  {"artifactType": self.fx.ref_type_a})
        if resp.header("OCI-Filters-Applied"):
            expect(len(ms) == 2, "expected 2 manifests after filtering, got %d" % len(ms), resp)
            expect_header(resp, "OCI-Filters-Applied", ARTIFACT_TYPE_FILTER)
            self.check_annotations(resp, ms)
        else:
            expect(len(ms) == 5,
                   "expected 5 manifests (no OCI-Filters-Applied), got %d" % len(ms), resp)
            self.check_annotations(resp, ms)
            self.warn("filtering by artifact-type is not implemented")

    def referrers_missing_subject(self):
        resp, ms = self.referrers(self.fx.manifests[3].digest)
        expect(len(ms) == 1, "expected 1 manifest, got %d" % len(ms), resp)
        d = ms[0].get("digest") or ""
        expect(d == self.fx.refs_c_layer.digest,
               "expected %s, got %s" % (self.fx.refs_c_layer.digest, d), resp)

    def discovery_delete_manifests(self):
        run_only_if(self.run_discovery_setup)
        fx = self.fx
        for ref in (fx.refs_index.digest, fx.manifests[2].digest, fx.manifests[4].digest,
                    fx.refs_a_config.digest, fx.refs_a_layer.digest, TEST_TAG_NAME,
                    fx.refs_b_config.digest, fx.refs_b_layer.digest, fx.refs_c_layer.digest):
            self.delete("/v2/<name>/manifests/<digest>", S2XX | {405, 404}, digest=ref)

    def references_teardown(self):
        run_only_if(self.run_discovery_setup)
        fx = self.fx
        ok = S2XX | {405, 404}

        def manifests():
            for ref in (fx.refs_index.digest, fx.refs_a_config.digest, fx.refs_a_layer.digest):
                self.delete("/v2/<name>/manifests/<reference>", ok, reference=ref)
            self.delete("/v2/<name>/manifests/<digest>", ok, digest=fx.manifests[4].digest)
            for ref in (fx.refs_b_config.digest, fx.refs_b_layer.digest):
                self.delete("/v2/<name>/manifests/<reference>", ok, reference=ref)

        if self.delete_manifest_before_blobs:
            manifests()
        for d in (fx.configs[4].digest, fx.ref_blob_a.digest, fx.ref_blob_b.digest,
                  fx.empty_json.digest):
            self.delete("/v2/<name>/blobs/<digest>", ok, digest=d)
        if not self.delete_manifest_before_blobs:
            manifests()

    # ---------------- Content Management ----------------

    def management_tag(self):
        run_only_if(self.run_management_setup)
        self.tag_to_delete = TEST_TAG_NAME
        expect_status(self.put_manifest(self.tag_to_delete, self.fx.manifests[3].content), S2XX)

    def management_count_tags(self):
        run_only_if(self.run_management_setup)
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list"))
        expect_status(resp, {200})
        val, err = go_unmarshal(resp.body.strip(), TAG_LIST)
        expect(err is None, "expected a tag list, got: %s" % err, resp)
        self.mgmt_num_tags = len(val.get("tags") or [])

    def delete_tag(self):
        resp = self.c.do(self.c.req("DELETE", "/v2/<name>/manifests/<reference>",
                                    reference=self.tag_to_delete))
        expect_status(resp, {400, 202, 405})
        if resp.status == 400:
            errors, err = resp_errors(resp)
            expect(err is None, "expected an OCI error body, got: %s" % err, resp)
            code = errors[0].get("code") or ""
            expect(code == "UNSUPPORTED",
                   "expected errors[0].code UNSUPPORTED with a 400, got %r" % code, resp)

    def tags_after_delete(self):
        resp = self.c.do(self.c.req("GET", "/v2/<name>/tags/list"))
        expect_status(resp, {200})
        val, err = go_unmarshal(resp.body.strip(), TAG_LIST)
        expect(err is None, "expected a tag list, got: %s" % err, resp)
        tags = val.get("tags") or []
        expect(len(tags) < self.mgmt_num_tags,
               "expected fewer than %d tags, got %d %r" % (self.mgmt_num_tags, len(tags), tags),
               resp)

    def delete_blobs(self):
        run_only_if(self.run_management_setup)
        self.delete("/v2/<name>/blobs/<digest>", {202, 404, 405},
                    digest=self.fx.configs[3].digest)
        resp = self.c.do(self.c.req("DELETE", "/v2/<name>/blobs/<digest>",
                                    digest=self.fx.layer.digest))
        expect_status(resp, {202, 404, 405})
        if resp.status == 405:
            self.blob_delete_allowed = False

    def get_deleted_blob(self):
        run_only_if(self.run_management_setup)
        run_only_if(self.blob_delete_allowed)
        self.blob_status("GET", self.fx.configs[3].digest, {404})


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="OCI distribution-spec conformance checks (a re-expression of "
                    "opencontainers/distribution-spec conformance/)")
    ap.add_argument("base_url", help="the registry's root, e.g. http://127.0.0.1:5000")
    ap.add_argument("--namespace", default=os.environ.get("OCI_NAMESPACE") or
                    "conformance/distribution-test")
    ap.add_argument("--crossmount-namespace",
                    default=os.environ.get("OCI_CROSSMOUNT_NAMESPACE") or
                    "conformance-%s" % uuid.uuid4())
    ap.add_argument("--user", default=os.environ.get("OCI_USERNAME", ""))
    ap.add_argument("--password", default=os.environ.get("OCI_PASSWORD", ""))
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every request and response on stderr")
    args = ap.parse_args(argv)

    client = Client(args.base_url, args.namespace, args.user, args.password,
                    os.environ.get("OCI_AUTH_SCOPE", ""), args.verbose)
    suite = Suite(client, Fixture(), args.crossmount_namespace)
    plan = suite.plan()
    print("# OCI distribution conformance against %s (namespace %s, cross-mount namespace %s)"
          % (args.base_url, args.namespace, args.crossmount_namespace))
    print("1..%d" % len(plan))
    passed = failed = skipped = 0
    for n, (wf, ctx, text, fn) in enumerate(plan, 1):
        name = "%s / %s / %s" % (wf, ctx, text)
        suite.warnings = []
        try:
            fn()
        except Skip as e:
            skipped += 1
            print("ok %d - %s # SKIP %s" % (n, name, e))
        except Fail as e:
            failed += 1
            print("not ok %d - %s: %s" % (n, name, e))
        except TransportError as e:
            failed += 1
            print("not ok %d - %s: expected no client error, got: %s" % (n, name, e))
        except Exception as e:  # a panic in the Go suite fails the spec too
            failed += 1
            print("not ok %d - %s: %s: %s" % (n, name, type(e).__name__, e))
        else:
            passed += 1
            print("ok %d - %s" % (n, name))
        for w in suite.warnings:
            print("#   WARNING: %s" % w)
        sys.stdout.flush()
    print("# passed %d failed %d skipped %d" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
