#!/usr/bin/env bash
# Make sure RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) answer. For each server
# that does not: install it from Debian's packages if it is missing, start it, and wait
# until it answers. Safe to run again and again; it changes nothing when both answer.
# With --tools it also installs the load generator the HTTP benchmark uses (wrk); with
# --browser, Chromium for the dashboard's browser tests (tests/ui); with --postgres,
# PostgreSQL on 127.0.0.1:5432 for the example shop's tests (user postgres, database test,
# trust auth on loopback; set up that way only when this script installed it).
set -euo pipefail

AMQP_PORT=${BURROW_AMQP_PORT:-5672}
REDIS_PORT=${BURROW_REDIS_PORT:-6379}
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-120}

answers() {  # host port: true when something accepts TCP connections there
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&- 2>/dev/null
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
install_pkg() {  # package command
  if command -v "$2" >/dev/null 2>&1; then return 0; fi
  echo "services: installing $1 from Debian's packages"
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

wait_for() {  # name port
  local deadline=$((SECONDS + WAIT_SECONDS))
  until answers 127.0.0.1 "$2"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "services: $1 did not answer on 127.0.0.1:$2 within ${WAIT_SECONDS}s" >&2
      exit 1
    fi
    sleep 1
  done
  echo "services: $1 answers on 127.0.0.1:$2"
}

if [ "${1:-}" = "--tools" ]; then  # what `make bench` needs besides the servers
  install_pkg wrk wrk
fi

if [ "${1:-}" = "--browser" ]; then  # what `make test` needs for tests/ui
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    echo "services: installing chromium from Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  [ -x /usr/bin/chromium ] || { echo "services: /usr/bin/chromium is missing" >&2; exit 1; }
  echo "services: chromium at /usr/bin/chromium"
fi

if [ "${1:-}" = "--postgres" ] && ! answers 127.0.0.1 5432; then
  fresh_pg=0
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    install_pkg postgresql psql
    fresh_pg=1
  fi
  if [ "$fresh_pg" -eq 1 ]; then
    # Our own fresh install: let loopback connect as any user without a password.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    done
  fi
  echo "services: starting postgresql"
  for conf in /etc/postgresql/*/main; do
    version=$(basename "$(dirname "$conf")")
    as_root pg_ctlcluster "$version" main start || true
  done
  wait_for PostgreSQL 5432
  if [ "$fresh_pg" -eq 1 ]; then
    as_root su postgres -c "createdb test" 2>/dev/null || true
  fi
fi

if ! answers 127.0.0.1 "$REDIS_PORT"; then
  install_pkg redis-server redis-server
  echo "services: starting redis-server"
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
fi
wait_for Redis "$REDIS_PORT"

if ! answers 127.0.0.1 "$AMQP_PORT"; then
  install_pkg rabbitmq-server rabbitmq-server
  echo "services: starting rabbitmq-server"
  as_root rabbitmq-server -detached
fi
wait_for RabbitMQ "$AMQP_PORT"
# The port opens before the broker accepts logins; wait for the application itself.
if command -v rabbitmqctl >/dev/null 2>&1; then
  as_root timeout "$WAIT_SECONDS" rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
