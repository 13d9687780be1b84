"""The official MCP Python SDK as a client of the gateway's /mcp facade.

Usage: mcp_python_client.py URL KEY URI PROMPT ARGS_JSON

Lists resources, reads URI, gets PROMPT with ARGS_JSON (an object) and prints one JSON object:
{"protocol", "resources": [uri…], "read": [contents…], "prompt": [messages…]}.
KEY ("-" for none) is sent as a bearer token.
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, key: str, uri: str, prompt: str, arguments: dict) -> None:
    headers = {} if key == "-" else {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                listed = await session.list_resources()
                contents = await session.read_resource(uri)
                got = await session.get_prompt(prompt, arguments=arguments)
                print(
                    json.dumps(
                        {
                            "protocol": str(init.protocol_version),
                            "resources": [str(r.uri) for r in listed.resources],
                            "read": [c.model_dump(mode="json", exclude_none=True) for c in contents.contents],
                            "prompt": [m.model_dump(mode="json", exclude_none=True) for m in got.messages],
                        }
                    )
                )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])))
