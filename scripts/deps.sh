#!/bin/sh
# Installs the Debian packages athost builds, tests and demos with, when
# they are missing. Needs root (or sudo) only if something is missing.
set -e

# clang builds the libFuzzer harnesses (fuzz/, make fuzz; make check runs
# them briefly); libFuzzer's runtime is in a package named after clang's
# version, installed once clang is there.
PKGS="gcc make pkg-config liblua5.4-dev libuv1-dev libssl-dev lua-cjson-dev \
libedit-dev openssl mosquitto mosquitto-clients libxml2-utils iproute2 procps util-linux \
ser2net man-db groff-base binutils bash clang"

# install PKG...: installs those of the packages that are missing.
install() {
    missing=""
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing="$missing $p"
        fi
    done
    [ -z "$missing" ] && return 0
    echo "deps: installing$missing"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "deps: missing packages:$missing (run as root, or install them)" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
    echo "deps: done"
}

# shellcheck disable=SC2086
install $PKGS
v=$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)
[ -n "$v" ] && install "libclang-rt-$v-dev"
exit 0
