#!/usr/bin/env bash
# Build the platform's image (the Dockerfile) with Debian's buildah, which needs no container
# engine, on a base made from Debian's packages by mmdebstrap, which needs no image registry.
#
#   deploy/image.sh [IMAGE]        default localhost/meter-platform:latest
#
# BUILDAH_ROOT: a folder for buildah's storage (default: buildah's own), where the base and the
# dependency layer (`localhost/meter-platform-deps:<hash of the lock file>`) are kept for the next
# build; BASE_IMAGE: the base's name, built once and reused. Run as root (mmdebstrap and buildah's chroot isolation need it).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/meter-platform:latest}
base=${BASE_IMAGE:-localhost/meter-platform-base:bookworm}
# vfs and chroot: no overlay filesystem, no user namespaces, no daemon
buildah=(buildah --storage-driver vfs)
if [ -n "${BUILDAH_ROOT:-}" ]; then
    buildah+=(--root "$BUILDAH_ROOT/storage" --runroot "$BUILDAH_ROOT/run")
fi

if ! "${buildah[@]}" inspect --type image "$base" >/dev/null 2>&1; then
    tarball=$(mktemp --suffix .tar)
    trap 'rm -f "$tarball"' EXIT
    # Debian 12's Python 3.11 with venv, LightGBM's OpenMP runtime, CA certificates, useradd
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,libgomp1,ca-certificates,passwd \
        bookworm "$tarball"
    container=$("${buildah[@]}" from scratch)
    "${buildah[@]}" add --quiet "$container" "$tarball" /
    "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash "$container"
    "${buildah[@]}" commit --quiet --rm "$container" "$base"
fi

# the host's CA bundle, for a build behind a TLS-inspecting proxy (the Dockerfile looks for it)
ca=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    ca=(--volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro)
fi
build=("${buildah[@]}" build --quiet --isolation chroot --format docker --build-arg "BASE=$base" "${ca[@]}")

# The dependency layer: built once per base, lock file and Dockerfile, and kept under that name
deps_tag=$(cat requirements.lock Dockerfile <(echo "$base") | sha256sum | cut -c1-16)
deps=localhost/meter-platform-deps:$deps_tag
if ! "${buildah[@]}" inspect --type image "$deps" >/dev/null 2>&1; then
    "${build[@]}" --target dependencies --tag "$deps" .
    # the dependency layers of earlier lock files are not needed again
    "${buildah[@]}" images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/meter-platform-deps:' | grep -v ":$deps_tag\$" \
        | xargs -r "${buildah[@]}" rmi >/dev/null || true
fi
"${build[@]}" --build-arg "DEPENDENCIES=$deps" --tag "$image" .
# the image this tag named before, now nameless
"${buildah[@]}" rmi --prune >/dev/null 2>&1 || true
