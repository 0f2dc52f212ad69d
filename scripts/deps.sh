#!/usr/bin/env bash
# Installs the Debian packages quill builds and tests with. Idempotent: does
# nothing (not even `apt-get update`) when every package is already installed.
set -euo pipefail

PACKAGES="build-essential cmake pkg-config liburing-dev libisal-dev librocksdb-dev
	libnbd-dev libcriterion-dev libjson-c-dev fio nbdkit qemu-utils libnbd-bin python3
	python3-libnbd qemu-system-x86 busybox-static cpio libgnutls28-dev gnutls-bin strace
	fdisk e2fsprogs libsodium-dev clang libclang-rt-dev etcd-server etcd-client
	libcurl4-openssl-dev curl python3-cryptography"

missing=()
for pkg in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps.sh: all packages installed"
	exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	SUDO=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "${missing[@]}"
