# The `cutx` binary (every service is a subcommand of it) on a slim Debian image.
# Used by docker-compose.yml; see README.md, "Distributed mode".

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Protos are compiled with protox (no protoc) and TLS is rustls on ring: nothing else to install.
RUN cargo build --release --locked --bin cutx

FROM debian:bookworm-slim
# Root certificates, for S3 and other servers reached over https.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cutx /usr/local/bin/cutx
USER nobody
ENTRYPOINT ["cutx"]
CMD ["--help"]
