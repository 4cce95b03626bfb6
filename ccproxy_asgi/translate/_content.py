"""Anthropic content blocks → OpenAI message parts: images, documents, search results, server-tool artifacts."""

from __future__ import annotations

from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.translate._validate import (
    _bad,
    _bad_tag,
    _block_type,
    _fail,
    _join,
    _optional_string,
    _string,
    _text_blocks,
)

# --- content blocks → OpenAI parts ---------------------------------------------------------------------


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        _bad(f"{path}.source", source, "a valid dictionary or object")
    kind = source.get("type")
    if kind == "base64":
        media_type = _string(source, "media_type", f"{path}.source")
        url = f"data:{media_type};base64,{_string(source, 'data', f'{path}.source')}"
    elif kind == "url":
        url = _string(source, "url", f"{path}.source")
    elif kind == "file":
        _fail(
            f"{path}.source: file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the image as base64 or URL"
        )
    else:
        _bad_tag(f"{path}.source", kind, "'base64', 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict):
        _bad(f"{path}.source", source, "a valid dictionary or object")
    title = _optional_string(block, "title", path)
    context = _optional_string(block, "context", path)
    kind = source.get("type")
    source_path = f"{path}.source"
    if kind == "base64":
        media_type = _string(source, "media_type", source_path)
        if media_type != "application/pdf":
            _fail(f"{source_path}.media_type: Input should be 'application/pdf'")
        filename = title or "document.pdf"
        if not filename.lower().endswith(".pdf"):
            # OpenAI infers the file type from the name's extension.
            filename += ".pdf"
        data_url = f"data:application/pdf;base64,{_string(source, 'data', source_path)}"
        return [{"type": "file", "file": {"filename": filename, "file_data": data_url}}]
    if kind == "url":
        _fail(
            f"{source_path}: URL PDF documents are not supported: OpenAI Chat Completions only takes PDFs "
            "inline; download the PDF and send it as a base64 source"
        )
    if kind == "file":
        _fail(
            f"{source_path}: file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the document as base64 or text"
        )
    header = "\n".join(
        line
        for line in (f"Document: {title}" if title else "", f"Context: {context}" if context else "")
        if line
    )
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    if kind == "text":
        texts.append(_string(source, "data", source_path))
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for i, item in enumerate(content):
                item_path = f"{source_path}.content.{i}"
                item_kind = _block_type(item, item_path)
                if item_kind == "text":
                    texts.append(_string(item, "text", item_path))
                elif item_kind == "image":
                    parts.append(_image_part(item, item_path))
                else:
                    _bad_tag(item_path, item_kind, "'text', 'image'")
        else:
            _bad(f"{source_path}.content", content, "a valid string or list")
    else:
        _bad_tag(source_path, kind, "'base64', 'text', 'content', 'url'")
    text = _join([header, *texts])
    return [{"type": "text", "text": text}, *parts] if text else parts


def _search_result_text(block: dict[str, Any], path: str) -> str:
    title = _optional_string(block, "title", path) or ""
    source = _optional_string(block, "source", path) or ""
    content = block.get("content")
    texts = _text_blocks(content, f"{path}.content") if content is not None else []
    head = "\n".join(
        line
        for line in (
            f"Search result: {title}" if title else "Search result",
            f"Source: {source}" if source else "",
        )
        if line
    )
    return _join([head, *texts])


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _render_server_block(block: dict[str, Any]) -> str:
    """A text rendering of a server-tool artifact for a model that never saw Anthropic's server tools.

    Tolerant by design: these blocks are history the upstream can only read, so any shape renders to
    something rather than failing the request.
    """
    kind = block.get("type")
    if kind == "server_tool_use":
        try:
            arguments = jsonutil.dumps_str(block.get("input"))
        except (TypeError, ValueError):
            arguments = "{}"
        return f"[server tool call {block.get('name')!s}: {arguments}]"
    if kind == "container_upload":
        return f"[file uploaded to the code-execution container: {block.get('file_id')!s}]"
    content = block.get("content")
    lines = [f"[{kind}]"]
    if isinstance(content, list):
        for item in content:
            title, url = _get(item, "title"), _get(item, "url")
            if isinstance(url, str):
                lines.append(f"- {title} <{url}>" if isinstance(title, str) else f"- <{url}>")
            elif isinstance(_get(item, "tool_name"), str):
                lines.append(f"- tool {_get(item, 'tool_name')}")
    elif isinstance(content, dict):
        for key in ("url", "error_code", "return_code", "stdout", "stderr"):
            value = content.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                lines.append(f"{key}: {value}")
        document = content.get("content")
        data = _get(_get(document, "source"), "data")
        if isinstance(data, str) and _get(_get(document, "source"), "type") == "text":
            lines.append(data)
    return "\n".join(lines)
