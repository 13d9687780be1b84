"""Approval through the official OpenAI Python SDK: asks (non-streaming), answers "approve"
(streaming) with the conversation as any client sends it back; prints one JSON line.

Usage: openai_approval.py BASE_URL API_KEY MODEL PROMPT
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, api_key, model, prompt = sys.argv[1:5]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": prompt}]
    asked = client.chat.completions.create(model=model, messages=messages)
    request = asked.choices[0].message.content
    messages += [{"role": "assistant", "content": request}, {"role": "user", "content": "approve"}]
    text = []
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
    print(json.dumps({"request": request, "finish": asked.choices[0].finish_reason, "answer": "".join(text)}))


if __name__ == "__main__":
    main()
