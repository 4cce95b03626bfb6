#!/usr/bin/env bash
# Several ccproxy-asgi worker processes sharing one rate-limit budget and one circuit breaker in Redis.
#
#   redis-server --port 6379 &                      # or any Redis 6+ reachable from here
#   examples/multiprocess_redis/run.sh              # 3 uvicorn workers on http://127.0.0.1:8082
#
# Every value below is a default: set the variable in the environment to override it (WORKERS, HOST,
# PORT, and any CCPROXY_* setting). With no CCPROXY_UPSTREAM_BASE_URL the built-in mock upstream is
# started and every worker uses it.
set -euo pipefail

# ----- shared state ------------------------------------------------------------------------------------
export CCPROXY_STATE_BACKEND=redis
export CCPROXY_REDIS_URL="${CCPROXY_REDIS_URL:-redis://127.0.0.1:6379/0}"
# Redis down: the limiter admits without limits (open) or answers 429 (closed); the breaker falls back
# to one breaker per process (local) or none (allow). Either way the error is logged and retried.
export CCPROXY_RATE_LIMIT_STORE_FAILURE_MODE="${CCPROXY_RATE_LIMIT_STORE_FAILURE_MODE:-open}"
export CCPROXY_BREAKER_REDIS_FAILURE_MODE="${CCPROXY_BREAKER_REDIS_FAILURE_MODE:-local}"

# ----- the upstream account's budget, for all workers together -------------------------------------------
export CCPROXY_RATE_LIMIT_RPM="${CCPROXY_RATE_LIMIT_RPM:-500}"
export CCPROXY_RATE_LIMIT_TPM="${CCPROXY_RATE_LIMIT_TPM:-200000}"
export CCPROXY_RATE_LIMIT_WINDOW_SECONDS="${CCPROXY_RATE_LIMIT_WINDOW_SECONDS:-60}"
export CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS="${CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS:-30}"

# ----- circuit breaker, shared: one worker seeing the upstream fail opens it for all ----------------------
export CCPROXY_BREAKER_FAILURE_THRESHOLD="${CCPROXY_BREAKER_FAILURE_THRESHOLD:-5}"
export CCPROXY_BREAKER_RECOVERY_SECONDS="${CCPROXY_BREAKER_RECOVERY_SECONDS:-30}"

# ----- streams through load balancers: a ping well inside nginx's 60 s and Cloudflare's 100 s -------------
export CCPROXY_PING_INTERVAL_SECONDS="${CCPROXY_PING_INTERVAL_SECONDS:-10}"
export CCPROXY_LOG_FORMAT="${CCPROXY_LOG_FORMAT:-json}"

WORKERS="${WORKERS:-3}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8082}"

if ! command -v ccproxy-asgi >/dev/null 2>&1; then
  repo="$(cd "$(dirname "$0")/../.." && pwd)"
  PATH="$repo/.venv/bin:$PATH"   # `make serve` or `make test` installed it there
fi

exec ccproxy-asgi serve --workers "$WORKERS" --host "$HOST" --port "$PORT"
