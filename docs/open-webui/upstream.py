"""A scripted OpenAI-compatible upstream for a manual Open WebUI check (stdlib only)."""
import json, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def reply_for(body):
    msgs = body.get("messages", [])
    if body.get("response_format"):
        return {"text": json.dumps({"name": "Ada Lovelace", "age": 36})}
    last = msgs[-1] if msgs else {}
    text = json.dumps(last.get("content", "")) if not isinstance(last.get("content"), str) else last["content"]
    if "### Task" in text or "JSON format" in text:
        return {"text": '{"title": "Tool test", "tags": ["test"], "follow_ups": []}'}
    if last.get("role") == "tool":
        return {"text": "Done. The tool said: " + str(last.get("content"))[:200]}
    if "ask" in text.lower():
        return {"tool": ("ts__ask", {"kind": "form"})}
    return {"tool": ("ts__echo", {"text": "hello from Open WebUI"})}

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        data = json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]}).encode()
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        r = reply_for(body)
        cid = "chatcmpl-" + uuid.uuid4().hex
        if "tool" in r:
            name, args = r["tool"]
            delta = {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_" + uuid.uuid4().hex[:8], "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}
            finish = "tool_calls"
        else:
            delta = {"role": "assistant", "content": r["text"]}
            finish = "stop"
        if body.get("stream"):
            self.send_response(200); self.send_header("content-type", "text/event-stream"); self.end_headers()
            for d, f in ((delta, None), ({}, finish)):
                chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": "scripted", "choices": [{"index": 0, "delta": d, "finish_reason": f}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            usage = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": "scripted", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
            self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        else:
            msg = dict(delta); msg.setdefault("content", None)
            data = json.dumps({"id": cid, "object": "chat.completion", "created": int(time.time()), "model": "scripted", "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}).encode()
            self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
