# syntax=docker/dockerfile:1
# Build: docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) -t ack-drift-exporter:0.1.0 .
# Stage 1 builds the release binary from the locked dependencies; stage 2 is the binary alone
# on distroless (glibc, CA certificates, no shell), as a numeric non-root user.

FROM docker.io/library/rust:1.95-bookworm AS build
ARG REVISION=unknown
ENV ACK_DRIFT_GIT_REVISION=${REVISION}
WORKDIR /src
# The whole tree (less .dockerignore): Cargo.toml names the tests and benches too.
COPY . .
RUN cargo build --release --locked --bin ack-drift-exporter \
 && strip target/release/ack-drift-exporter

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/ack-drift-exporter /ack-drift-exporter
USER 65532:65532
EXPOSE 9754
ENTRYPOINT ["/ack-drift-exporter"]
CMD ["serve"]
