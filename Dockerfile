# syntax=docker/dockerfile:1
# The Engram Similarity Service image: engram-server and engram-cli built with
# the README's own scripts (scripts/install-deps.sh, scripts/build.sh), on a
# slim runtime of the same Ubuntu release. Ubuntu 24.04 carries the gRPC 1.51,
# protobuf 3.21 and Abseil 20220623 of Debian 12, where CI builds and tests.
#
#   GPU (CUDA backend, the default):
#     docker build -t registry.example.com/engram-similarity:0.1.0-cuda .
#   CPU only:
#     docker build --build-arg VARIANT=cpu \
#       -t registry.example.com/engram-similarity:0.1.0-cpu .
#
# Run it as `docker run -p 50051:50051 -p 9464:9464 IMAGE [FLAGS]` (add
# `--gpus all` for the GPU variant); Kubernetes passes --flagfile (deploy/).
#
# CI (scripts/image-check.sh) builds the CPU variant on a Debian 12 base of
# its own (CPU_BUILDER_IMAGE, CPU_RUNTIME_IMAGE) from binaries it has just
# built (BINARIES=context), and runs it. buildah (1.28) chooses the stages to
# build from --build-arg values alone, not from the defaults below: with
# buildah, pass VARIANT and BINARIES explicitly.

# gpu or cpu.
ARG VARIANT=gpu
ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=24.04
# The CPU variant's base images. Another base must be a Debian or Ubuntu
# release with the gRPC, protobuf and Abseil versions above.
ARG CPU_BUILDER_IMAGE=ubuntu:${UBUNTU_VERSION}
ARG CPU_RUNTIME_IMAGE=ubuntu:${UBUNTU_VERSION}
# Where the binaries come from:
#   source   (the default) compiled in the builder stage from the context;
#   context  taken as they are from the build context's prebuilt/ folder:
#            engram-server, engram-cli and runtime-packages.txt (the output
#            of scripts/runtime-packages.sh on them), built on the same
#            release as the runtime base.
ARG BINARIES=source

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS builder-gpu
ENV ENGRAM_CUDA=ON

FROM ${CPU_BUILDER_IMAGE} AS builder-cpu
ENV ENGRAM_CUDA=OFF

# builder-gpu or builder-cpu, the stages above (DL3006 takes them for images).
# hadolint ignore=DL3006
FROM builder-${VARIANT} AS binaries-source
# GPUs the CUDA kernels are compiled for: A100, A10/A10G, L4, H100/H200, and
# PTX that newer GPUs compile at start-up. Add 75-real for T4.
ARG CUDA_ARCHITECTURES="80-real;86-real;89-real;90-real;90-virtual"
# Parallel compile jobs, read by scripts/build.sh.
ARG JOBS=4
WORKDIR /src
# Packages first, in a layer of their own that source edits do not invalidate.
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh
COPY . .
# scripts/runtime-packages.sh lists the packages that hold the shared libraries
# the two binaries load; the runtime stage installs exactly those.
RUN scripts/build.sh -DENGRAM_CUDA="${ENGRAM_CUDA}" \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DENGRAM_BUILD_TESTS=OFF -DENGRAM_BUILD_BENCHMARKS=OFF \
    && mkdir -p /out \
    && cp build/server/engram-server build/client/engram-cli /out/ \
    && scripts/runtime-packages.sh /out/engram-server /out/engram-cli \
         > /out/runtime-packages.txt

FROM scratch AS binaries-context
COPY prebuilt/engram-server prebuilt/engram-cli prebuilt/runtime-packages.txt \
     /out/

# binaries-source or binaries-context (BINARIES above).
# hadolint ignore=DL3006
FROM binaries-${BINARIES} AS builder

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime-gpu

FROM ${CPU_RUNTIME_IMAGE} AS runtime-cpu

# hadolint ignore=DL3006
FROM runtime-${VARIANT}
LABEL org.opencontainers.image.title="engram-similarity" \
      org.opencontainers.image.description="Engram Similarity Service (gRPC: BatchCosine, Spread, GetStats)"
COPY --from=builder /out/runtime-packages.txt /tmp/runtime-packages.txt
# Unpinned versions: the base image's tag fixes the release, as in the
# builder; a pinned version would stop building at the release's next update.
RUN apt-get update \
    && xargs --arg-file=/tmp/runtime-packages.txt \
         apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
    && groupadd --gid 10001 engram \
    && useradd --uid 10001 --gid 10001 --no-create-home \
         --home-dir /nonexistent --shell /usr/sbin/nologin engram
COPY --from=builder /out/engram-server /out/engram-cli /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# gRPC, and Prometheus /metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["engram-cli", "health", "--server=127.0.0.1:50051", "--timeout=3s"]
ENTRYPOINT ["engram-server"]
