#!/usr/bin/env python3
#  otlp_receiver - a stand-in OTLP/HTTP collector for the tracing tests.
#  Accepts POST /v1/traces with an OTLP/HTTP JSON ExportTraceServiceRequest
#  (the Python standard library's http.server and json), checks the shape the
#  OTLP specification gives its JSON form (hex ids of 32 and 16 digits,
#  integer kind and status code, decimal-string nanosecond times), and writes
#  one line per span to OUTFILE: the span object plus "service" (the
#  resource's service.name). A body that breaks the shape gets 400 and a line
#  {"error": ...}, so a test sees it. Prints "listening on PORT" on stderr.
#  Usage: otlp_receiver.py PORT OUTFILE [STATUS]  (STATUS: answer every POST so)
#  SPDX-License-Identifier: MPL-2.0
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def check_span(span):
    assert HEX32.match(span["traceId"]), "traceId"
    assert HEX16.match(span["spanId"]), "spanId"
    if "parentSpanId" in span:
        assert HEX16.match(span["parentSpanId"]), "parentSpanId"
    assert isinstance(span["kind"], int) and 0 <= span["kind"] <= 5, "kind"
    start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    assert 0 < start <= end, "times"
    assert isinstance(span.get("status", {}).get("code", 0), int), "status"
    for link in span.get("links", []):
        assert HEX32.match(link["traceId"]) and HEX16.match(link["spanId"]), "link"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        status = self.server.answer
        lines = []
        try:
            assert self.path == "/v1/traces", "path " + self.path
            assert self.headers.get("Content-Type") == "application/json", "content type"
            request = json.loads(body)
            for resource_spans in request["resourceSpans"]:
                service = ""
                for attr in resource_spans["resource"]["attributes"]:
                    if attr["key"] == "service.name":
                        service = attr["value"]["stringValue"]
                for scope_spans in resource_spans["scopeSpans"]:
                    for span in scope_spans["spans"]:
                        check_span(span)
                        span["service"] = service
                        span["headers"] = {k.lower(): v for k, v in self.headers.items()}
                        lines.append(span)
        except (AssertionError, KeyError, ValueError, TypeError) as error:
            lines = [{"error": repr(error)}]
            status = 400
        if status == 200:
            with open(self.server.outfile, "a") as out:
                for line in lines:
                    out.write(json.dumps(line) + "\n")
        elif "error" in (lines[0] if lines else {}):
            with open(self.server.outfile, "a") as out:
                out.write(json.dumps(lines[0]) + "\n")
        reply = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


def main():
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.outfile = sys.argv[2]
    server.answer = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    open(server.outfile, "a").close()
    print("listening on %d" % server.server_address[1], file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
