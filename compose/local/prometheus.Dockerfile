#  Stand-in for the prom/prometheus image, for a host that reaches no
#  registry: Debian's prometheus package on the local debian:bookworm, with
#  wget for the health check (the official image has busybox's). Same
#  entrypoint shape: arguments are prometheus flags.
#  SPDX-License-Identifier: MPL-2.0
ARG DEBIAN_IMAGE=debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus \
 && chown prometheus:prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
