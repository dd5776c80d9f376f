# Terrace container image.
#
#   docker build -t terrace .                 # release build inside the image (stage `build`)
#   scripts/release                           # binary tarball + image, the way CI builds them
#
# Stages: `build` compiles a release binary; `runtime-base` is the small runtime (Debian slim,
# CA certificates, curl for the health check, tini as PID 1, the non-root `terrace` user);
# `runtime` (the default) adds the binary from `build`; `runtime-prebuilt` adds a binary that
# was built outside (the build argument TERRACE_BINARY, a path in the build context), so an
# already compiled binary is not compiled twice.

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# `terrace --version` names the revision; .git is not in the build context, so it is passed in.
ARG TERRACE_GIT_REVISION=unknown
ENV TERRACE_GIT_REVISION=${TERRACE_GIT_REVISION}
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/terrace /out/terrace

FROM ${BASE_IMAGE} AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 terrace \
    && useradd --system --uid 10001 --gid terrace --home-dir /data --shell /usr/sbin/nologin terrace \
    && install -d -m 0750 -o terrace -g terrace /data
# Inside the container Terrace listens on every interface; outside, the default stays loopback.
ENV TERRACE_LISTEN=0.0.0.0:8080 \
    TERRACE_DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
# tini forwards SIGTERM to Terrace (which drains in-flight requests) and reaps Terraform's
# processes when runners run in the container.
ENTRYPOINT ["/usr/bin/tini", "--", "terrace"]
CMD ["serve"]
LABEL org.opencontainers.image.title="terrace" \
      org.opencontainers.image.description="Terraform state backend and private registry"

FROM runtime-base AS runtime-prebuilt
ARG TERRACE_BINARY=terrace
COPY --chmod=0755 ${TERRACE_BINARY} /usr/local/bin/terrace

FROM runtime-base AS runtime
COPY --from=build /out/terrace /usr/local/bin/terrace
