# A Granary member: `docker build -t granary .`, then run it with the
# GRANARY_* variables of `granary node` (docker-compose.yml shows a cluster).

# The builder has the whole toolchain; only the static binary leaves it.
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so editing code does not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .dockerignore keeps .git out of the context, so there is nothing to stamp:
# `granary version` in the image reports the module and Go version only.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -o /out/granary ./cmd/granary

# No shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/granary /granary
USER nonroot:nonroot
# Inside a container the gateway must listen beyond loopback to be reached;
# the health probe still dials 127.0.0.1.
ENV GRANARY_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["/granary", "healthcheck"]
ENTRYPOINT ["/granary", "node"]
