"""The OpenAI Agents SDK with the gateway's Responses endpoint as its model; prints one JSON line.

Usage: openai_agents.py BASE_URL PROMPT

The agent has no tools of its own: the gateway offers its MCP tools and runs them in its loop.
"""
import json
import sys

from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI


def main() -> None:
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=sys.argv[1], api_key="sk-test-client", max_retries=0, timeout=60)
    agent = Agent(
        name="helper",
        instructions="Answer with the tools you are given.",
        model=OpenAIResponsesModel(model="gpt-test", openai_client=client),
    )
    result = Runner.run_sync(agent, sys.argv[2])
    print(json.dumps({
        "final": result.final_output,
        "items": [item.type for item in result.new_items],
        "raw": [item.raw_item.model_dump(mode="json", exclude_none=True) if hasattr(item.raw_item, "model_dump")
                else item.raw_item for item in result.new_items],
    }))


if __name__ == "__main__":
    main()
