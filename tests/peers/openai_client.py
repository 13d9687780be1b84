"""Drives the gateway with the official OpenAI Python SDK; prints one JSON line with what it got.

Usage: openai_client.py BASE_URL MODEL PROMPT
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, model, prompt = sys.argv[1:4]
    client = OpenAI(base_url=base_url, api_key="sk-test-client", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": prompt}]

    plain = client.chat.completions.create(model=model, messages=messages)
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    print(json.dumps({
        "plain": plain.choices[0].message.content,
        "plain_finish": plain.choices[0].finish_reason,
        "plain_usage": plain.usage.total_tokens,
        "stream": "".join(text),
        "stream_finish": finish,
        "stream_usage": usage,
    }))


if __name__ == "__main__":
    main()
