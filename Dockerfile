# docstream's image for docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin docstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tesseract-ocr tesseract-ocr-eng && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/docstream /usr/local/bin/docstream
COPY pipelines /app/pipelines
COPY sql /app/sql
COPY schemas /app/schemas
WORKDIR /app
ENTRYPOINT ["docstream"]
