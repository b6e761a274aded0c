//! Small contract components written as WAT, for the engine tests: the
//! canonical ABI by hand, so each exercises exactly one thing.

/// The contract's types, exported so the functions' types can name them (the
/// `request` resource is imported from the host, with its `types` interface).
const TYPES: &str = r#"
  (type $provider-kind' (enum "openai" "azure-openai" "bedrock" "mock"))
  (export $provider-kind "provider-kind" (type $provider-kind'))
  (type $health' (enum "healthy" "degraded" "cooling-down" "unhealthy"))
  (export $health "health" (type $health'))
  (type $live-state' (record
    (field "health" $health)
    (field "latency-ewma-ms" f64)
    (field "in-flight" u32)
    (field "error-rate" f64)
    (field "cooldown-remaining-ms" u64)
    (field "ratelimit-remaining-requests" (option u64))
    (field "ratelimit-remaining-tokens" (option u64))))
  (export $live-state "live-state" (type $live-state'))
  (type $candidate' (record (field "id" u32) (field "health" $health)))
  (export $candidate "candidate" (type $candidate'))
  (type $retry-on' (flags "connect-error" "timeout" "rate-limited" "server-error"))
  (export $retry-on "retry-on" (type $retry-on'))
  (type $plan' (record (field "targets" (list u32)) (field "retry-on" $retry-on) (field "reason" string)))
  (export $plan "plan" (type $plan'))
  (type $rejection' (record (field "status" u16) (field "code" string) (field "message" string)))
  (export $rejection "rejection" (type $rejection'))
  (type $decision' (variant (case "route" $plan) (case "reject" $rejection)))
  (export $decision "decision" (type $decision'))
  (type $outcome' (record
    (field "request-id" string)
    (field "route" string)
    (field "tenant" (option string))
    (field "model" string)
    (field "upstream" (option string))
    (field "status" u16)
    (field "attempts" u32)
    (field "latency-ms" u32)
    (field "time-to-first-token-ms" (option u32))
    (field "tokens-in" u32)
    (field "tokens-out" u32)
    (field "cost-usd" f64)))
  (export $outcome "outcome" (type $outcome'))
"#;

/// A module with the memory, a bump `realloc`, and the counter key `hits` at 2048.
const MEMORY: &str = r#"
  (core module $Mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (data (i32.const 2048) "hits")
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $at) (local.get 3)))
      (block $fits
        (br_if $fits (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (drop (memory.grow (i32.add (i32.const 1)
          (i32.div_u (global.get $bump) (i32.const 65536))))))
      (local.get $at)))
  (core instance $mem (instantiate $Mem))
  (alias core export $mem "memory" (core memory $memory))
  (alias core export $mem "realloc" (core func $realloc))
"#;

/// A policy that adds 1 to its counter `hits` on every `decide` (after dropping
/// its borrow of the request, as every guest must) and answers an empty plan (the decision at address 1024 is all zeroes: route, no targets,
/// no retry flags, empty reason). With `observe` exported or not.
pub fn counting_policy(with_observe: bool, host_version: &str) -> String {
    let observe = if with_observe {
        r#"(func (export "observe") (param "outcome" $outcome)
             (canon lift (core func $main "observe") (memory $memory) (realloc $realloc)))"#
    } else {
        ""
    };
    format!(
        r#"(component
  (import "switchyard:policy/types@0.1.0" (instance $types
    (export "request" (type (sub resource)))))
  (alias export $types "request" (type $request))
  (import "switchyard:policy/host@{host_version}" (instance $host
    (export "counter-add" (func (param "key" string) (param "delta" s64) (result s64)))))
  {TYPES}
  {MEMORY}
  (core func $counter-add (canon lower (func $host "counter-add") (memory $memory)))
  (core func $drop-request (canon resource.drop $request))
  (core module $Main
    (import "host" "counter-add" (func $add (param i32 i32 i64) (result i64)))
    (import "host" "drop-request" (func $drop-request (param i32)))
    (func (export "decide") (param i32 i32 i32) (result i32)
      (call $drop-request (local.get 0))
      (drop (call $add (i32.const 2048) (i32.const 4) (i64.const 1)))
      (i32.const 1024))
    (func (export "observe") (param i32)))
  (core instance $main (instantiate $Main
    (with "host" (instance
      (export "counter-add" (func $counter-add))
      (export "drop-request" (func $drop-request))))))
  (func (export "decide") (param "req" (borrow $request)) (param "candidates" (list $candidate)) (result $decision)
    (canon lift (core func $main "decide") (memory $memory) (realloc $realloc)))
  {observe}
)"#
    )
}
