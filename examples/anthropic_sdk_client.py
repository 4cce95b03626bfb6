"""Talk to a running ccproxy-asgi with the official `anthropic` SDK.

    make serve                                   # in one terminal (mock upstream if none is configured)
    .venv/bin/python examples/anthropic_sdk_client.py [http://127.0.0.1:8082]
"""

from __future__ import annotations

import sys

import anthropic


def main(base_url: str) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key="any-key-unless-CCPROXY_API_KEYS-is-set")

    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello in five words."}],
    )
    print("non-stream:", message.content[0].text if message.content[0].type == "text" else message.content[0])

    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "Count to five."}],
    ) as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
        final = stream.get_final_message()
    print(f"\nstream: stop_reason={final.stop_reason} usage={final.usage.input_tokens}/{final.usage.output_tokens}")

    count = client.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    print("count_tokens:", count.input_tokens)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8082")
