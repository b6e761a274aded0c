# build_js OUT_DIR: builds every JavaScript policy (policies/*-js/, entry module
# = package.json's "main") into OUT_DIR/<folder>.wasm, e.g.
# policies/compliance-js -> OUT_DIR/compliance-js.wasm.
#
# Each policy folder pins its componentize-js in package.json and
# package-lock.json; `npm ci` installs it into the folder's node_modules/
# (skipped while the lock file is unchanged). guest-sdk/js/componentize.mjs
# drives componentize-js's API with WASI stdio, random, clocks and http off,
# and speeds up the JavaScript glue it generates (guest-sdk/js/bindings-patch.mjs;
# SWITCHYARD_JS_RAW_BINDINGS=1 builds with the glue as generated).

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Checks for Node.js >= 20 and npm; prints what to install when missing.
js_toolchain_check() {
    # Debian 12's own nodejs package is 18: too old for oxc-parser.
    local install="Node.js 20 or newer with npm (NodeSource's nodejs package, or nodejs.org)"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        policy_missing JavaScript "node and npm" "$install"
        return 1
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        policy_missing JavaScript "Node.js 20 or newer (found $(node --version))" "$install"
        return 1
    fi
}

# Installs a policy folder's locked npm dependencies unless they are current.
js_install() {
    local dir=$1 stamp lock_sum
    stamp="$dir/node_modules/.switchyard-lock.sha256"
    lock_sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$lock_sum" >"$stamp"
}

build_js() {
    local out_dir=${1:?usage: build_js OUT_DIR}
    js_toolchain_check || return 1
    local root dir name main started
    root=$(policy_repo_root)
    mkdir -p "$out_dir" || return 1
    out_dir=$(cd "$out_dir" && pwd)
    while read -r dir; do
        name=$(basename "$dir")
        started=$EPOCHREALTIME
        js_install "$dir" || return 1
        main=$(cd "$dir" && node -p 'require("./package.json").main || "index.js"')
        # From the repository root, so that relative imports of guest-sdk/js resolve.
        (cd "$root" && node guest-sdk/js/componentize.mjs "$dir" "$dir/$main" wit "$out_dir/$name.wasm") \
            || return 1
        echo "built $out_dir/$name.wasm ($(wc -c <"$out_dir/$name.wasm") bytes, $(policy_elapsed "$started") s)"
    done < <(policy_dirs js)
}
