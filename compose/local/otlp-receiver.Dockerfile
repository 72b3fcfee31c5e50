#  Stand-in for the jaegertracing/all-in-one image, for a host that reaches
#  no registry: the tests' OTLP/HTTP receiver (tests/support/otlp_receiver.py,
#  OTLP's own .proto files from the npm package pinned in tests/support/otlp,
#  decoded by Debian's python3-protobuf) on the local debian:bookworm. Takes
#  POST /v1/traces on 4318 like Jaeger's OTLP port and appends each span, one
#  JSON line, to /tmp/spans.jsonl, which scripts/compose-smoke reads.
#  Build context: tests/support (after scripts/bootstrap's npm ci there).
#  SPDX-License-Identifier: MPL-2.0
ARG DEBIAN_IMAGE=debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-protobuf protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
COPY otlp_receiver.py /opt/otlp/otlp_receiver.py
COPY otlp/node_modules/@opentelemetry/otlp-grpc-exporter-base/build/protos /opt/otlp/protos
ENV OTLP_PROTO_DIR=/opt/otlp/protos OTLP_RECEIVER_BIND=0.0.0.0
USER 10001
EXPOSE 4318
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4318/healthz', timeout=2)"]
ENTRYPOINT ["python3", "/opt/otlp/otlp_receiver.py", "4318", "/tmp/spans.jsonl"]
