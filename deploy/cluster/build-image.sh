#!/usr/bin/env bash
# Builds a container image of gpunet from a local build, without a registry: a root filesystem
# holding the gpunet binary, a shell and a few small programs (so the provider agent's process
# runtime can run `sh -c` jobs), the shared libraries `ldd` lists for them and the dynamic
# loader, imported into the Docker Engine with `docker import`.
#
#   deploy/cluster/build-image.sh [BINARY] [IMAGE]
#
# BINARY defaults to target/release/gpunet (build it with `cargo build --release -p gpunet`),
# IMAGE to gpunet:local. The image is also tagged gpunet:<first 16 hex of its content hash>,
# and an image with the same content is not imported twice. Prints the image reference.
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary="${1:-$root_dir/target/release/gpunet}"
image="${2:-gpunet:local}"
programs=(sh cat ls sleep head tr echo mkdir mv touch id hostname env)

die() { echo "build-image: $*" >&2; exit 1; }
[[ -x "$binary" ]] || die "no gpunet binary at $binary; run: cargo build --release -p gpunet"
command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine does not answer; start it (e.g. systemctl start docker)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,net,data,jobs}
chmod 1777 "$rootfs/tmp"

# Copies a host file to the same path inside the root filesystem.
copy_host_file() {
  local src="$1"
  mkdir -p "$rootfs$(dirname "$src")"
  cp -L "$src" "$rootfs$src"
}

# Copies what `ldd` says a program needs (libraries and the loader) at their host paths.
copy_libs() {
  local prog="$1" line lib
  while read -r line; do
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
    lib=""
    if [[ "$line" == *"=> /"* ]]; then
      lib="${line#*=> }"; lib="${lib%% (*}"
    elif [[ "$line" == /* ]]; then
      lib="${line%% (*}"
    fi
    if [[ -n "$lib" && ! -e "$rootfs$lib" ]]; then copy_host_file "$lib"; fi
  done < <(ldd "$prog" 2>/dev/null || true)
}

cp -L "$binary" "$rootfs/bin/gpunet"
copy_libs "$binary"
for p in "${programs[@]}"; do
  src="$(PATH=/usr/bin:/bin:/usr/sbin:/sbin type -P "$p" || true)"
  [[ -n "$src" && "$src" == /* ]] || die "program $p is not on this host"
  cp -L "$src" "$rootfs/bin/$p"
  copy_libs "$src"
done
printf 'root:x:0:0:root:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"

# Content hash over the sorted file list and bytes: same binaries, same tag.
hash="$(cd "$rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
content_ref="gpunet:$hash"
if ! docker image inspect "$content_ref" >/dev/null 2>&1; then
  echo "build-image: importing $content_ref ($(du -sh "$rootfs" | cut -f1))" >&2
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
    | docker import \
        --change 'ENV PATH=/bin' \
        --change 'ENV HOME=/tmp' \
        --change 'WORKDIR /tmp' \
        --change 'ENTRYPOINT ["/bin/gpunet"]' \
        - "$content_ref" >/dev/null
fi
if [[ "$image" != "$content_ref" ]]; then docker tag "$content_ref" "$image"; fi
echo "$image"
