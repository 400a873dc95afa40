# Sourced by the bench scripts: the config of the three-transform chain they measure. deny and count
# come from the C plugin, redirect from a Swift one; redirect's hot-key patterns match none of
# redis-benchmark's keys, so every request pays for its checks and stays on the primary.
# Usage: three_transform_chain REDIS_PORT LISTEN_PORT > file.yaml   (from the repository root)
three_transform_chain() {
  cat <<YAML
plugins:
  directory: $PWD/build/plugins
  require: [command-filter, redirect]
sinks:
  primary: { redis: { address: 127.0.0.1:$1 } }
  hot: { redis: { address: 127.0.0.1:$1 } }
chains:
  main:
    - deny: { commands: [FLUSHALL, FLUSHDB, KEYS, DEBUG] }
    - count: {}
    - redirect: { target: hot, patterns: ["hot:*", "session:*"], keys: [leaderboard] }
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:$2, chain: main }
YAML
}
