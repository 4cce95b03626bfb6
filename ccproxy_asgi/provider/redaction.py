"""Redaction of an upstream's error text before a client sees it.

An upstream's error message is worth passing on ("maximum context length is 128000 tokens"), but it is
written for the upstream's operators, not for the proxy's users, and may carry what only the proxy may
know: the upstream key it was sent (echoed bare, not only in `sk-…` or `Bearer …` shape), credentials in a
URL, a stack trace of the upstream's own code, the paths of its files. So `redact_error_text` removes:

- secrets: everything `ccproxy_asgi.logs.mask_secrets` masks in log lines (`sk-…` keys, bearer tokens,
  the keys `create_app` registered, the client key bound to the request), plus the `secrets` given here
  in any spelling of case and in URL- or JSON-escaped form, `Basic` credentials, secret query parameters
  (`?api_key=…`) and keys the upstream already masked partly (`sk-abc****wxyz`);
- credentials in URLs: `scheme://user:password@host` becomes `scheme://***@host`;
- stack traces: everything from `Traceback (most recent call last):` on, and frame lines such as
  `  File "/x/y.py", line 3, in f` (with their source line) or `    at f (/x/y.js:1:2)`;
- absolute file paths: `/srv/app/main.py`, `/opt/models/x/config.json`, `~/.cache/x`, `C:\\x\\y` become
  `<path>`. A path needs a file extension or a system root (`/home`, `/opt`, `/srv`, …) to count: API
  routes (`/v1/chat/completions`) and JSON pointers (`/messages/0/content`) are kept, they explain errors.

Only the first `MAX_SCANNED` characters are looked at (cut back to a whitespace, so no key is left in
halves); callers cap the result to their message length after redaction, never before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

from ccproxy_asgi.logs import MIN_SECRET_LENGTH, REDACTED, mask_secrets

MAX_SCANNED: Final = 16 * 1024
PATH: Final = "<path>"
TRACE_REMOVED: Final = "(the upstream's stack trace was removed)"

_TRACEBACK = "Traceback (most recent call last):"
# A Python frame line and, below it, the source line indented deeper; Node/Java/.NET `at …` frames.
_PY_FRAME = re.compile(r'^([ \t]*)File "[^"\n]*", line \d+[^\n]*(?:\n\1[ \t]+[^\n]*)?\n?', re.MULTILINE)
_AT_FRAME = re.compile(r"^[ \t]+at [^\n]*(?:\(|\s)[^\s()]*:\d+(?::\d+)?\)?[ \t]*$\n?", re.MULTILINE)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:api[_-]?key|key|access[_-]?token|token|secret|password|passwd|sig|signature)=)"
    r"[^&#\s\"'<>]+"
)
_BASIC = re.compile(r"(?<![A-Za-z0-9_-])(Basic|basic|BASIC)\s+[A-Za-z0-9+/_-]{6,}={0,2}")
_PARTLY_MASKED = re.compile(r"(?<![\w*-])[\w-]*\*{4,}[\w-]*")
_SYSTEM_ROOTS = frozenset(
    {
        "home",
        "root",
        "usr",
        "opt",
        "var",
        "srv",
        "etc",
        "tmp",
        "app",
        "apps",
        "mnt",
        "data",
        "workspace",
        "workspaces",
        "Users",
        "Library",
        "private",
        "proc",
        "sys",
        "lib",
        "lib64",
        "bin",
        "sbin",
        "run",
        "nix",
        "snap",
        "code",
        "src",
        "build",
        "models",
        "cache",
    }
)
_UNIX_PATH = re.compile(r"(?<![\w.:/\\~-])(~?(?:/[\w.@+-]+){2,})/?")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\s\\\"'<>|:*?]+\\?)+")
_TRAILING_PARTIAL = re.compile(r"\S*$")


def _is_file_path(match: re.Match[str]) -> bool:
    path = match.group(1)
    if path.startswith("~"):
        return True
    segments = path.split("/")
    return segments[1] in _SYSTEM_ROOTS or bool(_EXTENSION.search(segments[-1]))


def _path_or_text(match: re.Match[str]) -> str:
    return PATH if _is_file_path(match) else match.group(0)


def _without_traces(text: str) -> str:
    cut = text.find(_TRACEBACK)
    if cut >= 0:
        text = text[:cut].rstrip() or TRACE_REMOVED
    if 'File "' in text:
        text = _PY_FRAME.sub("", text)
    if " at " in text or "\tat " in text:
        text = _AT_FRAME.sub("", text)
    return text


def _mask_known(text: str, secrets: Iterable[str | None]) -> str:
    usable = [secret for secret in secrets if secret and len(secret) >= MIN_SECRET_LENGTH]
    text = mask_secrets(text, usable)
    lowered = text.lower()
    for secret in usable:
        for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
            if form.lower() in lowered:
                text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
                lowered = text.lower()
    return text


def redact_error_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without secrets, URL credentials, stack traces and file paths (see the module docstring).

    `secrets`: values to remove besides the registered ones, such as the upstream key and the client key
    the request was sent with; values shorter than `MIN_SECRET_LENGTH` are ignored (they would mask
    common words).
    """
    if len(text) > MAX_SCANNED:
        text = _TRAILING_PARTIAL.sub("", text[:MAX_SCANNED])
    text = _without_traces(text)
    text = _mask_known(text, secrets)
    if "://" in text:
        text = _URL_USERINFO.sub(r"\1" + REDACTED + "@", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1" + REDACTED, text)
    if "asic" in text or "ASIC" in text:
        text = _BASIC.sub(r"\1 " + REDACTED, text)
    if "****" in text:
        text = _PARTLY_MASKED.sub(REDACTED, text)
    if "/" in text:
        text = _UNIX_PATH.sub(_path_or_text, text)
    if ":\\" in text:
        text = _WINDOWS_PATH.sub(PATH, text)
    return text


__all__ = ["MAX_SCANNED", "PATH", "TRACE_REMOVED", "redact_error_text"]
