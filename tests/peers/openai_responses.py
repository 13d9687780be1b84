"""Drives the gateway's /v1/responses with the official OpenAI Python SDK; prints one JSON line.

Usage: openai_responses.py BASE_URL

In order (the scripted model behind the gateway answers each in turn):
1. create with a hosted `mcp` tool (our server `ts`, only `echo`): the tool runs in the loop;
2. the same, streamed with `responses.stream`: the event types in order, and the final response;
3. a client function tool: handed back as `function_call`; the follow-up with
   `function_call_output` and `previous_response_id` completes; GET and DELETE of the response;
4. `require_approval: "always"`: an `mcp_approval_request`; approving runs the tool;
5. the same, denied: the tool does not run.
"""
import json
import sys

from openai import OpenAI


def items(response):
    return [item.model_dump(mode="json", exclude_none=True) for item in response.output]


def main() -> None:
    client = OpenAI(base_url=sys.argv[1], api_key="sk-test-client", max_retries=0, timeout=60)
    ours = {"type": "mcp", "server_label": "ts", "allowed_tools": ["echo"], "require_approval": "never"}
    out = {}

    first = client.responses.create(model="m", input="echo hi", tools=[ours])
    out["create"] = {"output": items(first), "text": first.output_text, "status": first.status}

    with client.responses.stream(model="m", input="echo again", tools=[ours]) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    out["stream"] = {"types": types, "output": items(final), "text": final.output_text}

    weather = {"type": "function", "name": "get_weather", "description": "Weather of a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    asked = client.responses.create(model="m", input="weather in Paris?", tools=[weather])
    call = next(item for item in asked.output if item.type == "function_call")
    followed = client.responses.create(
        model="m", previous_response_id=asked.id, tools=[weather],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "sunny"})}],
    )
    fetched = client.responses.retrieve(followed.id)
    client.responses.delete(followed.id)
    try:
        client.responses.retrieve(followed.id)
        gone = False
    except Exception:  # noqa: BLE001 - the SDK raises NotFoundError
        gone = True
    out["function"] = {"call": call.model_dump(mode="json", exclude_none=True), "text": followed.output_text,
                       "fetched": fetched.id == followed.id, "gone_after_delete": gone}

    careful = dict(ours, require_approval="always")
    for decision, prompt in [(True, "echo approve me"), (False, "echo deny me")]:
        # Instructions on every turn, as the Agents SDK sends them.
        waiting = client.responses.create(model="m", input=prompt, tools=[careful], instructions="Be careful.")
        requests = [item for item in waiting.output if item.type == "mcp_approval_request"]
        answered = client.responses.create(
            model="m", previous_response_id=waiting.id, tools=[careful], instructions="Be careful.",
            input=[{"type": "mcp_approval_response", "approval_request_id": r.id, "approve": decision} for r in requests],
        )
        out["approve" if decision else "deny"] = {
            "requests": [r.model_dump(mode="json", exclude_none=True) for r in requests],
            "output": items(answered), "text": answered.output_text,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
