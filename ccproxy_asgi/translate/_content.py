"""Anthropic content blocks → OpenAI message parts: images, documents, search results, server-tool artifacts."""

from __future__ import annotations

from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.translate.fields import (
    ImageSource,
    fail,
    read_document,
    read_image,
    read_search_result,
    read_source_item_type,
    read_text,
)


def join_texts(texts: list[str]) -> str:
    """Texts as one, blank-line separated, empty ones left out (how several text blocks become one)."""
    if len(texts) == 1:  # most often: a message of one text block
        return texts[0]
    return "\n\n".join([t for t in texts if t])


# --- content blocks → OpenAI parts ---------------------------------------------------------------------


def _image_url_part(source: ImageSource, source_path: str) -> dict[str, Any]:
    if source["type"] == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source["type"] == "url":
        url = source["url"]
    else:
        fail(
            source_path,
            "file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the image as base64 or URL",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    return _image_url_part(read_image(block, path), f"{path}.source")


def _document_parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    title, context, source = read_document(block, path)
    source_path = f"{path}.source"
    if source["type"] == "base64":
        filename = title or "document.pdf"
        if not filename.lower().endswith(".pdf"):
            # OpenAI infers the file type from the name's extension.
            filename += ".pdf"
        data_url = f"data:application/pdf;base64,{source['data']}"
        return [{"type": "file", "file": {"filename": filename, "file_data": data_url}}]
    if source["type"] == "url":
        fail(
            source_path,
            "URL PDF documents are not supported: OpenAI Chat Completions only takes PDFs inline; "
            "download the PDF and send it as a base64 source",
        )
    if source["type"] == "file":
        fail(
            source_path,
            "file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the document as base64 or text",
        )
    header = "\n".join(
        line
        for line in (f"Document: {title}" if title else "", f"Context: {context}" if context else "")
        if line
    )
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    if source["type"] == "text":
        texts.append(source["data"])
    else:
        content = source["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            for i, item in enumerate(content):
                item_path = f"{source_path}.content.{i}"
                if read_source_item_type(item, item_path) == "text":
                    texts.append(read_text(item, item_path))
                else:
                    parts.append(_image_part(item, item_path))
    text = join_texts([header, *texts])
    return [{"type": "text", "text": text}, *parts] if text else parts


def _search_result_text(block: dict[str, Any], path: str) -> str:
    title, source, texts = read_search_result(block, path)
    head = "\n".join(
        line
        for line in (
            f"Search result: {title}" if title else "Search result",
            f"Source: {source}" if source else "",
        )
        if line
    )
    return join_texts([head, *texts])


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
