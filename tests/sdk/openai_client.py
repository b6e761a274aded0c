"""Drives the gateway with the official OpenAI Python SDK, unchanged but for base_url.

Prints one JSON object with what the SDK saw, for tests/gateway/sdk.rs to check.
"""
import json
import os
import sys

from openai import OpenAI, PermissionDeniedError

client = OpenAI(base_url=os.environ["GATEWAY_URL"] + "/v1", api_key=os.environ["GATEWAY_KEY"])
result = {}

completion = client.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "Hello from the SDK"}]
)
result["content"] = completion.choices[0].message.content
result["usage"] = completion.usage.total_tokens

raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{"role": "user", "content": "headers please"}]
)
result["upstream"] = raw.headers.get("x-switchyard-upstream")

chunks = []
for chunk in client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Stream please"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        chunks.append(chunk.choices[0].delta.content)
    if chunk.usage:
        result["stream_usage"] = chunk.usage.completion_tokens
result["stream_chunks"] = len(chunks)
result["stream_text"] = "".join(chunks)

try:
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "EU only"}],
        extra_headers={"x-data-residency": "eu"},
    )
    result["rejected"] = None
except PermissionDeniedError as err:
    result["rejected"] = {"status": err.status_code, "code": err.code}

models = client.models.list()
result["models"] = sorted(m.id for m in models.data)

json.dump(result, sys.stdout)
