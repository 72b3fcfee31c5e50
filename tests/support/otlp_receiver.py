#!/usr/bin/env python3
#  otlp_receiver - a stand-in OTLP/HTTP collector for the tracing tests.
#  Decodes what the processes export with OTLP's own protobuf definitions
#  (opentelemetry-proto, from the npm package pinned in tests/support/otlp,
#  compiled at start by Debian's protoc) and Google's protobuf runtime
#  (Debian's python3-protobuf): its proto3 JSON mapping for
#  application/json bodies, its binary decoder for application/x-protobuf.
#  OTLP/JSON differs from the proto3 JSON mapping in exactly two points
#  (OTLP specification, "JSON Protobuf Encoding"): trace and span ids are
#  hex, not base64, and enum values are integers. Those two are handled
#  here and nothing else; unknown fields are ignored, as OTLP tells JSON
#  receivers to. Writes one line per span to OUTFILE: the span as the
#  runtime prints it (ids back in hex, enums as integers) plus "service"
#  (the resource's service.name) and "headers". A body that does not
#  decode gets 400 and a line {"error": ...}, so a test sees it.
#  Prints "listening on PORT" on stderr; GET /healthz answers 200.
#  Usage: otlp_receiver.py PORT OUTFILE [STATUS]  (STATUS: answer every POST so)
#  Environment: OTLP_PROTO_DIR, the directory holding opentelemetry/proto/...;
#  OTLP_RECEIVER_BIND, the address to listen on [127.0.0.1] (the compose
#  stand-in, compose/local/otlp-receiver.Dockerfile, listens on 0.0.0.0).
#  SPDX-License-Identifier: MPL-2.0
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, HTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.environ.get("OTLP_PROTO_DIR") or os.path.join(
    HERE, "otlp/node_modules/@opentelemetry/otlp-grpc-exporter-base/build/protos")
PROTOS = ["opentelemetry/proto/common/v1/common.proto",
          "opentelemetry/proto/resource/v1/resource.proto",
          "opentelemetry/proto/trace/v1/trace.proto",
          "opentelemetry/proto/collector/trace/v1/trace_service.proto"]
#  Bytes fields OTLP/JSON writes in hex, and the length of their value
ID_FIELDS = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
HEX = re.compile(r"^[0-9a-fA-F]*$")


def load_definitions(workdir):
    """Compile the official .proto files and import the generated modules."""
    missing = [p for p in PROTOS if not os.path.isfile(os.path.join(PROTO_DIR, p))]
    if missing:
        sys.exit("otlp_receiver: no OTLP definitions under %s (run scripts/bootstrap, "
                 "which runs npm ci in tests/support/otlp)" % PROTO_DIR)
    subprocess.run(["protoc", "-I", PROTO_DIR, "--python_out=" + workdir]
                   + [os.path.join(PROTO_DIR, p) for p in PROTOS], check=True)
    sys.path.insert(0, workdir)
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    return json_format, trace_service_pb2.ExportTraceServiceRequest


def otlp_to_proto3(value, descriptor):
    """Rewrite the OTLP/JSON deviations in place: hex ids to base64, and
    check that enums are integers. Walks the JSON along the descriptor;
    anything of the wrong shape is left for the runtime to refuse."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            continue
        items = item if field.label == field.LABEL_REPEATED and isinstance(item, list) else [item]
        if field.type == field.TYPE_MESSAGE:
            for element in items:
                otlp_to_proto3(element, field.message_type)
        elif field.type == field.TYPE_BYTES and field.name in ID_FIELDS:
            size = ID_FIELDS[field.name]
            if not (isinstance(item, str) and HEX.match(item) and len(item) in (0, 2 * size)):
                raise ValueError("%s is not %d bytes of hex: %r" % (key, size, item))
            value[key] = base64.b64encode(bytes.fromhex(item)).decode()
        elif field.type == field.TYPE_ENUM:
            for element in items:
                if not isinstance(element, int) or isinstance(element, bool):
                    raise ValueError("%s: OTLP/JSON enums are integers: %r" % (key, element))


def ids_to_hex(span):
    """Back from the runtime's base64 to the hex the tests compare."""
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in span:
            span[key] = base64.b64decode(span[key]).hex()
    for link in span.get("links", []):
        ids_to_hex(link)


class Handler(BaseHTTPRequestHandler):
    def decode(self, body):
        json_format, request_type = self.server.definitions
        request = request_type()
        content_type = self.headers.get("Content-Type")
        if content_type == "application/json":
            document = json.loads(body)
            otlp_to_proto3(document, request_type.DESCRIPTOR)
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        elif content_type == "application/x-protobuf":
            request.ParseFromString(body)
        else:
            raise ValueError("content type %r" % content_type)
        lines = []
        for resource_spans in request.resource_spans:
            service = ""
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    service = attr.value.string_value
            for scope_spans in resource_spans.scope_spans:
                for message in scope_spans.spans:
                    if not 0 < message.start_time_unix_nano <= message.end_time_unix_nano:
                        raise ValueError("span times %d..%d" % (message.start_time_unix_nano,
                                                                message.end_time_unix_nano))
                    if len(message.trace_id) != 16 or len(message.span_id) != 8:
                        raise ValueError("span without trace or span id")
                    span = json_format.MessageToDict(message, use_integers_for_enums=True)
                    ids_to_hex(span)
                    span["service"] = service
                    span["headers"] = {k.lower(): v for k, v in self.headers.items()}
                    lines.append(span)
        return lines

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        status = self.server.answer
        refused = False
        try:
            if self.path != "/v1/traces":
                raise ValueError("path " + self.path)
            lines = self.decode(body)
        except Exception as error:  # the runtime's ParseError, DecodeError, ours
            lines = [{"error": repr(error)}]
            status, refused = 400, True
        if status == 200 or refused:
            with open(self.server.outfile, "a") as out:
                for line in lines:
                    out.write(json.dumps(line) + "\n")
        reply = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        reply = b"ok\n" if self.path == "/healthz" else b"not found\n"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


def main():
    workdir = tempfile.mkdtemp(prefix="otlp-receiver-")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        definitions = load_definitions(workdir)
        bind = os.environ.get("OTLP_RECEIVER_BIND") or "127.0.0.1"
        server = HTTPServer((bind, int(sys.argv[1])), Handler)
        server.definitions = definitions
        server.outfile = sys.argv[2]
        server.answer = int(sys.argv[3]) if len(sys.argv) > 3 else 200
        open(server.outfile, "a").close()
        print("listening on %d" % server.server_address[1], file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
