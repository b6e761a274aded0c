# shellcheck shell=bash disable=SC2034
# The systems under test and the upstreams they share: config writers and starters.
# Sourced after common.sh. Each start_* writes its config under $RUN, starts the
# process (pinned, see common.sh), waits until it answers and sets a *_PID variable.

COMPLETION=$(tr -d '\n' <"$BENCH_DIR/lib/completion.json")
REQUEST_FILE=$BENCH_DIR/lib/request.json

# The request body for MODEL (the fixed chat request with its model replaced).
request_body() {
    sed "s/\"model\":\"gpt-4o\"/\"model\":\"$1\"/" "$REQUEST_FILE" | tr -d '\n'
}

# nginx_common NAME: the top of an nginx config whose prefix is $RUN/nginx-NAME.
nginx_common() {
    local prefix=$RUN/nginx-$1
    mkdir -p "$prefix/logs"
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    client_body_buffer_size 64k;
EOF
}

# start_upstream: one nginx with the fast, 20 ms and flaky (10 % HTTP 500) upstreams,
# pinned with the load generator.
start_upstream() {
    local conf=$RUN/nginx-upstream.conf
    {
        nginx_common upstream
        cat <<EOF
    split_clients "\${request_id}" \$bench_fail { 10% fail; * ok; }
    server {
        listen 127.0.0.1:$P_FAST backlog=4096;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$COMPLETION';
        }
    }
    server {
        listen 127.0.0.1:$P_SLOW backlog=4096;
        location = /v1/chat/completions {
            default_type application/json;
            echo_read_request_body;
            echo_sleep 0.02;
            echo -n '$COMPLETION';
        }
    }
    server {
        listen 127.0.0.1:$P_FLAKY backlog=4096;
        location = /v1/chat/completions {
            default_type application/json;
            if (\$bench_fail = fail) {
                return 500 '{"error":{"message":"injected failure","type":"server_error","code":"bench"}}';
            }
            return 200 '$COMPLETION';
        }
    }
}
EOF
    } >"$conf"
    local p
    for p in $P_FAST $P_SLOW $P_FLAKY; do port_free "$p" || die "port $p is taken (set BENCH_PORT_BASE)"; done
    "${LOAD_CPU[@]}" nginx -p "$RUN/nginx-upstream" -c "$conf" 2>"$RUN/nginx-upstream.log" &
    UPSTREAM_PID=$!
    BENCH_PIDS+=("$UPSTREAM_PID")
    wait_http "http://127.0.0.1:$P_FAST/" "$UPSTREAM_PID"
}

# start_nginx_proxy: nginx proxy_pass with upstream keepalive, pinned to the gateway CPU.
start_nginx_proxy() {
    local conf=$RUN/nginx-proxy.conf
    {
        nginx_common proxy
        cat <<EOF
    upstream fast { server 127.0.0.1:$P_FAST; keepalive 256; keepalive_requests 1000000; }
    upstream slow { server 127.0.0.1:$P_SLOW; keepalive 256; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer $UPSTREAM_KEY";
    server {
        listen 127.0.0.1:$P_NGX_FAST backlog=4096;
        location / { proxy_pass http://fast; }
    }
    server {
        listen 127.0.0.1:$P_NGX_SLOW backlog=4096;
        location / { proxy_pass http://slow; }
    }
}
EOF
    } >"$conf"
    "${GW_CPU[@]}" nginx -p "$RUN/nginx-proxy" -c "$conf" 2>"$RUN/nginx-proxy.log" &
    NGINX_PROXY_PID=$!
    BENCH_PIDS+=("$NGINX_PROXY_PID")
    wait_http "http://127.0.0.1:$P_NGX_FAST/" "$NGINX_PROXY_PID"
}

# switchyard_config FILE FLAKY PORT ADMIN_PORT POLICIES: the gateway config. Models
# `gpt-4o` (two candidates on the fast upstream, one US and one EU, different prices)
# and `gpt-4o-slow` (the 20 ms upstream); route `chat` runs POLICIES (a TOML list) on
# every request. With FLAKY=1, `gpt-4o`'s cheapest candidate is the 10 %-failing
# upstream instead, so one request in ten falls back to the second candidate.
switchyard_config() {
    local file=$1 flaky=$2 port=$3 admin_port=$4 policies=$5 first_port=$P_FAST
    [ "$flaky" = 1 ] && first_port=$P_FLAKY
    local key_sha
    key_sha=$(printf '%s' "$CLIENT_KEY" | sha256sum | cut -d' ' -f1)
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"

[engine]
cache_dir = "$OUT/cache"
${SWITCHYARD_ENGINE_EXTRA:-}

[[client]]
name = "bench"
key_sha256 = "$key_sha"
tenant = "bench-tenant"

[[upstream]]
name = "primary-us"
provider = "openai"
endpoint = "http://127.0.0.1:$first_port"
api_key_env = "BENCH_UPSTREAM_KEY"
region = "eastus"
jurisdiction = "us"
models = { "gpt-4o" = { input_per_mtok = 2.5, output_per_mtok = 10.0 } }

[[upstream]]
name = "secondary-eu"
provider = "openai"
endpoint = "http://127.0.0.1:$P_FAST"
api_key_env = "BENCH_UPSTREAM_KEY"
region = "westeurope"
jurisdiction = "eu"
models = { "gpt-4o" = { input_per_mtok = 2.75, output_per_mtok = 11.0 } }

[[upstream]]
name = "slow-us"
provider = "openai"
endpoint = "http://127.0.0.1:$P_SLOW"
api_key_env = "BENCH_UPSTREAM_KEY"
region = "eastus"
jurisdiction = "us"
models = { "gpt-4o-slow" = { input_per_mtok = 2.5, output_per_mtok = 10.0 } }

[[policy]]
name = "compliance"
file = "$OUT/guests/compliance.wasm"
config = { eu_tenants = "eu-bank,eu-insurer" }
${SWITCHYARD_POLICY_EXTRA:-}

[[policy]]
name = "cost"
file = "$OUT/guests/cost.wasm"
${SWITCHYARD_POLICY_EXTRA:-}

[[route]]
name = "chat"
path_prefix = "/v1/"
policies = $policies
EOF
}

# launch_switchyard NAME FLAKY PORT ADMIN_PORT POLICIES [WRAPPER...]: the release
# binary with config $RUN/NAME.toml, pinned to the gateway CPU; sets LAUNCHED_PID.
# Access log off (RUST_LOG=warn), like nginx's `access_log off`. A WRAPPER (e.g.
# valgrind) runs the binary under it.
launch_switchyard() {
    local name=$1 flaky=$2 port=$3 admin_port=$4 policies=$5
    shift 5
    local conf=$RUN/$name.toml
    switchyard_config "$conf" "$flaky" "$port" "$admin_port" "$policies"
    port_free "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
    BENCH_UPSTREAM_KEY=$UPSTREAM_KEY RUST_LOG=${BENCH_SWITCHYARD_LOG:-warn} \
        "${GW_CPU[@]}" "$@" "$SWITCHYARD" serve --config "$conf" \
        >"$RUN/$name.out" 2>"$RUN/$name.log" &
    LAUNCHED_PID=$!
    BENCH_PIDS+=("$LAUNCHED_PID")
    wait_http "http://127.0.0.1:$port/v1/models" "$LAUNCHED_PID"
}

# start_switchyard [FLAKY] [WRAPPER...]: Switchyard with the two-stage chain
# (SWITCHYARD_ROUTE_POLICIES='[]' runs it without, to measure what the chain costs).
start_switchyard() {
    local flaky=${1:-0} policies=${SWITCHYARD_ROUTE_POLICIES:-'["compliance", "cost"]'}
    shift || true
    launch_switchyard switchyard "$flaky" "$P_SY" "$P_SY_ADMIN" "$policies" "$@"
    SWITCHYARD_PID=$LAUNCHED_PID
}

# start_switchyard_bare: the same gateway and config with no policies on the route,
# so one run splits Switchyard's cost into the chain's and the rest.
start_switchyard_bare() {
    launch_switchyard switchyard-bare 0 "$P_SYB" "$P_SYB_ADMIN" '[]'
    SWITCHYARD_BARE_PID=$LAUNCHED_PID
}

# start_switchyard_pgo: the PGO build (bench/lib/pgo.sh) with the same chain and
# config as start_switchyard.
start_switchyard_pgo() {
    local policies=${SWITCHYARD_ROUTE_POLICIES:-'["compliance", "cost"]'}
    SWITCHYARD=$SWITCHYARD_PGO launch_switchyard switchyard-pgo 0 "$P_SYP" "$P_SYP_ADMIN" "$policies"
    SWITCHYARD_PGO_PID=$LAUNCHED_PID
}

# start_floor: hyper-floor (bench/floor), the cheapest proxy on Switchyard's own
# stack, pinned to the gateway CPU, with a listener for each upstream.
start_floor() {
    local p
    for p in $P_FLOOR_FAST $P_FLOOR_SLOW; do port_free "$p" || die "port $p is taken (set BENCH_PORT_BASE)"; done
    [ -x "$HYPER_FLOOR" ] || die "no $HYPER_FLOOR (run without BENCH_NO_BUILD=1)"
    "${GW_CPU[@]}" "$HYPER_FLOOR" "127.0.0.1:$P_FLOOR_FAST=127.0.0.1:$P_FAST" \
        "127.0.0.1:$P_FLOOR_SLOW=127.0.0.1:$P_SLOW" >"$RUN/hyper-floor.out" 2>&1 &
    FLOOR_PID=$!
    BENCH_PIDS+=("$FLOOR_PID")
    wait_http "http://127.0.0.1:$P_FLOOR_FAST/" "$FLOOR_PID"
}

# start_litellm: LiteLLM's proxy (one uvicorn worker), pinned to the gateway CPU,
# with the same two models on the same upstreams.
start_litellm() {
    local conf=$RUN/litellm.yaml
    cat >"$conf" <<EOF
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:$P_FAST/v1
      api_key: $UPSTREAM_KEY
  - model_name: gpt-4o-slow
    litellm_params:
      model: openai/gpt-4o-slow
      api_base: http://127.0.0.1:$P_SLOW/v1
      api_key: $UPSTREAM_KEY
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: $CLIENT_KEY
EOF
    port_free "$P_LLM" || die "port $P_LLM is taken (set BENCH_PORT_BASE)"
    LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR LITELLM_TELEMETRY=False \
        "${GW_CPU[@]}" "$LITELLM_VENV/bin/litellm" --config "$conf" --host 127.0.0.1 \
        --port "$P_LLM" --num_workers 1 >"$RUN/litellm.log" 2>&1 &
    LITELLM_PID=$!
    BENCH_PIDS+=("$LITELLM_PID")
    wait_http "http://127.0.0.1:$P_LLM/health/liveliness" "$LITELLM_PID"
}

# url_of SYSTEM: the chat completions URL of a system (direct = the upstream itself).
# SLOW=1 selects the 20 ms upstream.
url_of() {
    local slow=${SLOW:-0}
    case $1 in
    direct) echo "http://127.0.0.1:$([ "$slow" = 1 ] && echo "$P_SLOW" || echo "$P_FAST")/v1/chat/completions" ;;
    nginx) echo "http://127.0.0.1:$([ "$slow" = 1 ] && echo "$P_NGX_SLOW" || echo "$P_NGX_FAST")/v1/chat/completions" ;;
    switchyard) echo "http://127.0.0.1:$P_SY/v1/chat/completions" ;;
    switchyard-bare) echo "http://127.0.0.1:$P_SYB/v1/chat/completions" ;;
    switchyard-pgo) echo "http://127.0.0.1:$P_SYP/v1/chat/completions" ;;
    hyper-floor) echo "http://127.0.0.1:$([ "$slow" = 1 ] && echo "$P_FLOOR_SLOW" || echo "$P_FLOOR_FAST")/v1/chat/completions" ;;
    litellm) echo "http://127.0.0.1:$P_LLM/v1/chat/completions" ;;
    esac
}

# model_of SYSTEM: the model name to send (the gateways pick the upstream by model).
model_of() {
    if [ "${SLOW:-0}" = 1 ] && [[ " switchyard switchyard-bare switchyard-pgo litellm " == *" $1 "* ]]; then
        echo gpt-4o-slow
    else
        echo gpt-4o
    fi
}

# pid_of SYSTEM: the process whose tree's RSS is the system's.
pid_of() {
    case $1 in
    nginx) echo "$NGINX_PROXY_PID" ;;
    switchyard) echo "$SWITCHYARD_PID" ;;
    switchyard-bare) echo "$SWITCHYARD_BARE_PID" ;;
    switchyard-pgo) echo "$SWITCHYARD_PGO_PID" ;;
    hyper-floor) echo "$FLOOR_PID" ;;
    litellm) echo "$LITELLM_PID" ;;
    *) echo "" ;;
    esac
}

# check_answers SYSTEM: one request; fails unless the answer is the completion.
check_answer() {
    local body
    body=$(curl -s -m 120 -H "authorization: Bearer $CLIENT_KEY" -H 'content-type: application/json' \
        -d "$(request_body "$(model_of "$1")")" "$(url_of "$1")")
    case $body in
    *'"chat.completion"'*) ;;
    *) die "$1 did not answer with a completion: ${body:0:300}" ;;
    esac
}
