# build_c OUT_DIR: builds every C policy (policies/*-c/, all its .c files) into
# OUT_DIR/<folder>.wasm, e.g. policies/compliance-c -> OUT_DIR/compliance-c.wasm.
#
# Route: C bindings generated at build time by the workspace's guest-tool
# (wit-bindgen-c) -> Debian clang + wasi-libc as a wasm32-wasi reactor module ->
# guest-tool component-new with the WASI preview1 reactor adapter.
# Intermediates (bindings, core modules) go to $CARGO_TARGET_DIR/policies-c/.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Checks for clang, wasm-ld, wasi-libc and the wasm32 builtins; prints what to
# install when missing.
c_toolchain_check() {
    local install="apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32"
    if ! command -v "${CC_WASM:-clang}" >/dev/null; then
        policy_missing C "clang" "$install"
        return 1
    fi
    if ! command -v wasm-ld >/dev/null; then
        policy_missing C "wasm-ld (lld)" "$install"
        return 1
    fi
    if [ ! -f "${WASI_SYSROOT:-/usr}/include/wasm32-wasi/stdlib.h" ]; then
        policy_missing C "wasi-libc (headers under ${WASI_SYSROOT:-/usr}/include/wasm32-wasi)" "$install"
        return 1
    fi
    # The wasm32 compiler-rt builtins, which clang links into every module.
    local builtins
    builtins=$("${CC_WASM:-clang}" --target=wasm32-wasi -print-libgcc-file-name)
    if [ ! -f "$builtins" ]; then
        policy_missing C "the wasm32 compiler-rt builtins ($builtins)" \
            "apt-get install -y libclang-rt-$("${CC_WASM:-clang}" -dumpversion | cut -d. -f1)-dev-wasm32"
        return 1
    fi
}

build_c() {
    local out_dir=${1:?usage: build_c OUT_DIR}
    c_toolchain_check || return 1
    local root work tool dir name started
    root=$(policy_repo_root)
    work=$(policy_target_dir)/policies-c
    mkdir -p "$out_dir" "$work/bindings" || return 1
    tool=$(policy_guest_tool) || return 1
    "$tool" c-bindings --wit "$root/wit" --world policy --out "$work/bindings" >/dev/null || return 1
    while read -r dir; do
        name=$(basename "$dir")
        started=$EPOCHREALTIME
        # -mexec-model=reactor: a library with exports and no _start.
        "${CC_WASM:-clang}" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" \
            -mexec-model=reactor -Os -std=c11 -Wall -Wextra -Werror \
            -I "$work/bindings" -I "$root/guest-sdk/c" \
            "$dir"/*.c "$root/guest-sdk/c/switchyard_policy.c" \
            "$work/bindings/policy.c" "$work/bindings/policy_component_type.o" \
            -Wl,--strip-debug \
            -o "$work/$name.core.wasm" || return 1
        "$tool" component-new "$work/$name.core.wasm" --adapt reactor \
            -o "$out_dir/$name.wasm" || return 1
        echo "built $out_dir/$name.wasm ($(wc -c <"$out_dir/$name.wasm") bytes, $(policy_elapsed "$started") s)"
    done < <(policy_dirs c)
}
