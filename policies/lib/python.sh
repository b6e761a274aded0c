# build_python OUT_DIR: builds every Python policy (policies/*-py/, entry module
# app.py defining class WitWorld) into OUT_DIR/<folder>.wasm, e.g.
# policies/compliance-py -> OUT_DIR/compliance-py.wasm.
#
# componentize-py is pip-installed, pinned, into a venv of its own under
# $CARGO_TARGET_DIR/tools/ (no global state); guest-sdk/python is on the
# policy's module path.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COMPONENTIZE_PY_VERSION=0.25.1

# Checks for python3 with venv; prints what to install when missing.
python_toolchain_check() {
    local install="apt-get install -y python3 python3-venv"
    if ! command -v python3 >/dev/null; then
        policy_missing Python "python3" "$install"
        return 1
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        policy_missing Python "python3's venv and ensurepip modules" "$install"
        return 1
    fi
}

# Creates the componentize-py venv once and prints the componentize-py path.
python_componentize_py() {
    local venv
    venv="$(policy_target_dir)/tools/componentize-py-$COMPONENTIZE_PY_VERSION"
    if [ ! -x "$venv/bin/componentize-py" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || return 1
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "componentize-py==$COMPONENTIZE_PY_VERSION" >&2 || return 1
    fi
    echo "$venv/bin/componentize-py"
}

build_python() {
    local out_dir=${1:?usage: build_python OUT_DIR}
    python_toolchain_check || return 1
    local root tool dir name started
    root=$(policy_repo_root)
    mkdir -p "$out_dir" || return 1
    tool=$(python_componentize_py) || return 1
    while read -r dir; do
        name=$(basename "$dir")
        started=$EPOCHREALTIME
        "$tool" -d "$root/wit" -w policy componentize app \
            -p "$dir" -p "$root/guest-sdk/python" \
            -o "$out_dir/$name.wasm" >/dev/null || return 1
        echo "built $out_dir/$name.wasm ($(wc -c <"$out_dir/$name.wasm") bytes, $(policy_elapsed "$started") s)"
    done < <(policy_dirs py)
}
