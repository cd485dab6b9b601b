# syntax=docker/dockerfile:1
# One build, one small image per service:
#   docker build --target ice-config -t REGISTRY/ice-config:TAG .
#   docker build --target signaling  -t REGISTRY/signaling:TAG .
#   docker build --target gateway    -t REGISTRY/gateway:TAG .
# The images run as the non-root user 65532 with nothing writable: the manifests in k8s/ set
# a read-only root filesystem.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ice-config -p signaling -p gateway \
 && mkdir -p /out \
 && cp target/release/ice-config target/release/signaling target/release/gateway /out/

# Distroless: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532

FROM runtime AS ice-config
COPY --from=build /out/ice-config /usr/local/bin/ice-config
EXPOSE 50051 8088
ENTRYPOINT ["/usr/local/bin/ice-config"]

FROM runtime AS signaling
COPY --from=build /out/signaling /usr/local/bin/signaling
EXPOSE 50052 8089
ENTRYPOINT ["/usr/local/bin/signaling"]

FROM runtime AS gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
COPY static /srv/static
ENV STATIC_DIR=/srv/static
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]
