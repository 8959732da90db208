"""Secrets in tracking URIs: masked before anything is printed, logged or tagged, and kept out of the config.

MLflow reads credentials for an http(s) tracking server from MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN); `externalize_credentials` moves a
`user:password@` out of the URI into those variables, so the config (and everything made from
it: Prefect parameters, MLflow params, version tags) holds no secret. A URI whose secret cannot
move (a database password, a token in the query) goes to MLFLOW_TRACKING_URI instead.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials in the URIs people paste (signed URLs, tokens, keys).
SECRET_PARAMS = (
    "token",
    "access_token",
    "auth",
    "password",
    "passwd",
    "pwd",
    "secret",
    "key",
    "api_key",
    "apikey",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "credential",
    "sas",
)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@]+)@")
_PARAM = re.compile(r"(?P<name>[?&;](?:" + "|".join(re.escape(p) for p in SECRET_PARAMS) + r"))=(?P<value>[^&;#\s'\"]*)", re.IGNORECASE)


def _secret_param(name: str) -> bool:
    return name.lower() in SECRET_PARAMS


def has_secret(uri: str | None) -> bool:
    """Whether the URI carries userinfo or a secret-bearing query parameter."""
    return bool(uri) and mask_text(uri) != uri


def mask_uri(uri: str | None) -> str | None:
    """The URI with its userinfo and secret query values replaced by ***."""
    return None if uri is None else mask_text(uri)


def mask_text(text: str) -> str:
    """Every URI userinfo (`scheme://user:pw@`) and secret query value in free text replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _PARAM.sub(lambda m: f"{m.group('name')}={MASK}", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without userinfo, username, password); a URI without userinfo comes back as it is."""
    from urllib.parse import unquote

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username or "") or None, unquote(parts.password) if parts.password is not None else None


def externalize_credentials(uri: str | None, environ: dict | None = None) -> str | None:
    """The URI to keep in the config, with its secret moved into the environment MLflow reads.

    http(s) userinfo -> MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD and the URI without it;
    any other secret-bearing URI -> MLFLOW_TRACKING_URI and None (TrackingConfig reads it from there).
    """
    environ = os.environ if environ is None else environ
    if not uri or not has_secret(uri):
        return uri
    parts = urlsplit(uri)
    query_secret = any(_secret_param(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme in ("http", "https") and not query_secret:
        clean, user, password = split_credentials(uri)
        if user is not None:
            environ["MLFLOW_TRACKING_USERNAME"] = user
        if password is not None:
            environ["MLFLOW_TRACKING_PASSWORD"] = password
        return clean
    environ["MLFLOW_TRACKING_URI"] = uri
    return None
