#!/usr/bin/env bash
# Docker, proven: builds the image with the Dockerfile as users do, runs it as
# they would, then brings up docker-compose.cluster.yml and loses a node.
# Run by .ci/run after the cargo tests; needs root (apt, dockerd) and Debian.
#
#   bash scripts/docker_check.sh
#
# Setup, each step only where needed: installs Debian's docker.io (and
# docker-compose, debootstrap), starts dockerd when no daemon answers (and
# stops it again at the end), and takes the base images from Docker Hub when
# they pull. Where they do not it makes local stand-ins, cached
# between runs by image name: tuneserve-ci/forky-minbase (debootstrap of
# Debian forky from the mirror apt uses), tuneserve-ci/forky-rust (that, with
# Debian's Rust) and tuneserve-ci/postgres (that, with Debian's PostgreSQL),
# and passes them as BUILDER and RUNTIME. Every container runs with host
# networking on 127.0.0.1 and a port of its own, so all traffic stays on
# loopback.
#
# What it proves, in the running image:
#  - /health says ok; the server process runs as the image's non-root user,
#    on a read-only root filesystem (the /data volume and a tmpfs /tmp);
#  - the README walkthrough on the tiny fixture: upload, a job to succeeded,
#    /classify with its model;
#  - `docker inspect` reports the image's health check (`tuneserve health`)
#    healthy;
#  - `docker restart` keeps datasets, jobs and models (the /data volume);
#  - `docker stop` during a job: the process hands the job back and exits 0
#    within Docker's default 10 s grace period, and after `docker start` the
#    job resumes from its checkpoint (events: interrupted, resumed) and
#    succeeds, every step logged once;
#  - the image: its size, no compiler, cargo or curl in it, a stripped binary;
#  - both compose files validate (`config`); the cluster file with
#    scripts/docker/docker-compose.ci.yml: two nodes in /nodes, jobs submitted
#    to both run on both and succeed, `docker kill` of the node running a job
#    after its first checkpoint, the other node finishes it (attempt 2,
#    resumed), and /classify answers on the survivor with its model.
#
# Environment: TUNESERVE_CI_IMAGE (tuneserve:ci), TUNESERVE_CI_PORT (18080),
# TUNESERVE_CI_NODE1_PORT / TUNESERVE_CI_NODE2_PORT (18081 / 18082),
# TUNESERVE_CI_PG_PORT (15432), TUNESERVE_DEBIAN_MIRROR (else the one apt
# uses), TUNESERVE_CI_STANDINS=1 (stand-ins even where the Hub answers),
# TUNESERVE_CI_REBUILD_STANDINS=1 (make them afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

IMAGE=${TUNESERVE_CI_IMAGE:-tuneserve:ci}
PORT=${TUNESERVE_CI_PORT:-18080}
export TUNESERVE_CI_IMAGE=$IMAGE
export TUNESERVE_CI_NODE1_PORT=${TUNESERVE_CI_NODE1_PORT:-18081}
export TUNESERVE_CI_NODE2_PORT=${TUNESERVE_CI_NODE2_PORT:-18082}
export TUNESERVE_CI_PG_PORT=${TUNESERVE_CI_PG_PORT:-15432}
SINGLE=tuneserve-ci-single
VOLUME=tuneserve-ci-data
PROJECT=tuneserve-ci
HUB_BUILDER=rust:1-slim-bookworm
HUB_RUNTIME=debian:bookworm-slim
HUB_POSTGRES=postgres:16
STANDIN_SUITE=forky # Rust >= 1.89; bookworm has 1.63, trixie 1.85
STANDIN_BASE=tuneserve-ci/$STANDIN_SUITE-minbase
STANDIN_BUILDER=tuneserve-ci/$STANDIN_SUITE-rust
STANDIN_POSTGRES=tuneserve-ci/postgres
FIXTURE=$repo/tests/fixtures/gpt2-tiny-parity
TWEETS=$repo/tests/fixtures/tweets

t0=$SECONDS
step() { echo "== $* [$((SECONDS - t0)) s]"; }
die() {
    echo "docker_check: FAILED: $*" >&2
    exit 1
}

work=$(mktemp -d)
DOCKER=docker
dockerd_pid=""
compose_up=""
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && $DOCKER info >/dev/null 2>&1; then
        for c in $SINGLE $($DOCKER ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
            if $DOCKER inspect "$c" >/dev/null 2>&1; then
                echo "-- the last log lines of $($DOCKER inspect -f '{{.Name}}' "$c")" >&2
                $DOCKER logs --tail 40 "$c" 2>&1 | sed 's/^/   /' >&2
            fi
        done
    fi
    $DOCKER rm -f "$SINGLE" >/dev/null 2>&1
    [ -n "$compose_up" ] && cluster down -v --remove-orphans >/dev/null 2>&1
    $DOCKER volume rm -f "$VOLUME" >/dev/null 2>&1
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
    fi
    rm -rf "$work"
    [ "$rc" -eq 0 ] || echo "docker_check: failed after $((SECONDS - t0)) s" >&2
}
trap cleanup EXIT

apt_install() {
    echo "   apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$work/apt.log" 2>&1 \
        || { apt-get update -q >"$work/apt.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$work/apt.log" 2>&1; } \
        || { tail -20 "$work/apt.log" >&2; die "apt-get install $* failed"; }
}

# ---------------------------------------------------------------- docker
step "Docker: daemon, CLI, compose"
[ "$(id -u)" -eq 0 ] || die "run as root: it installs packages and starts dockerd"
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || apt_install docker.io
    echo "   starting dockerd (log: $work/dockerd.log)"
    PATH=$PATH:/usr/sbin dockerd >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$work/dockerd.log" >&2; die "dockerd exited"; }
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; die "dockerd does not answer after 60 s"; }
fi
# A CLI that builds with BuildKit (the Dockerfile's cache mounts need it): one
# with the buildx plugin, or a pre-23 one (built-in BuildKit client with
# DOCKER_BUILDKIT=1). A newer CLI without buildx only has the legacy builder.
pick_cli() {
    local cli version
    for cli in docker /usr/bin/docker; do
        command -v "$cli" >/dev/null || continue
        if "$cli" buildx version >/dev/null 2>&1; then
            DOCKER=$cli
            return 0
        fi
        version=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || true)
        if [[ $version =~ ^([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -lt 23 ]; then
            DOCKER=$cli
            return 0
        fi
    done
    return 1
}
pick_cli || { apt_install docker.io && pick_cli; } \
    || die "no docker CLI here builds with BuildKit: install the buildx plugin (Debian: docker-buildx)"
export DOCKER_BUILDKIT=1
if $DOCKER compose version >/dev/null 2>&1; then
    COMPOSE=("$DOCKER" compose)
else
    command -v docker-compose >/dev/null || apt_install docker-compose
    COMPOSE=(docker-compose)
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.cluster.yml -f scripts/docker/docker-compose.ci.yml "$@"; }
# The cluster as compose renders the two files, less the published ports:
# docker-compose 1.x refuses them beside host networking (which discards them
# anyway), and an override file can add ports but not take them away.
render_cluster() {
    # Compose v2 renders JSON; 1.x prints its usage (and exits 0) at --format.
    if ! compose config --format json >"$work/cluster.rendered" 2>/dev/null \
        || ! [ -s "$work/cluster.rendered" ]; then
        compose config | /usr/bin/python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)' \
            >"$work/cluster.rendered" || die "rendering the cluster's compose files failed"
    fi
    jq -e '.services | has("node-1") and has("node-2") and has("postgres")' "$work/cluster.rendered" >/dev/null \
        || die "the rendered cluster lacks node-1, node-2 or postgres: $(head -c 300 "$work/cluster.rendered")"
    jq 'del(.services[].ports)' "$work/cluster.rendered" >"$work/cluster.json"
}
cluster() { "${COMPOSE[@]}" -p "$PROJECT" -f "$work/cluster.json" "$@"; }
echo "   CLI $($DOCKER version --format '{{.Client.Version}}'), daemon $($DOCKER version --format '{{.Server.Version}}'), storage $($DOCKER info --format '{{.Driver}}'); compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"

# ---------------------------------------------------------------- base images
# The Hub's images when they pull (or are here already), else stand-ins.
have_image() { $DOCKER image inspect "$1" >/dev/null 2>&1; }
# Docker Hub answers (401 to an anonymous /v2/) within 10 s: else no pull is
# tried, so an unreachable Hub costs seconds, not a pull timeout per image.
hub_answers() {
    [ -z "${TUNESERVE_CI_STANDINS:-}" ] || return 1
    if [ -z "${hub_state:-}" ]; then
        hub_state=no
        curl -s -o /dev/null --max-time 10 https://registry-1.docker.io/v2/ && hub_state=yes
    fi
    [ "$hub_state" = yes ]
}
pulls() { have_image "$1" || { hub_answers && timeout 900 $DOCKER pull -q "$1" >/dev/null 2>&1; }; }

debian_mirror() {
    if [ -n "${TUNESERVE_DEBIAN_MIRROR:-}" ]; then
        echo "$TUNESERVE_DEBIAN_MIRROR"
        return
    fi
    # The first Debian archive URL apt is configured with (deb822 or one-line).
    local url
    url=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -oE '(https?)://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
    echo "${url:-http://deb.debian.org/debian}"
}

standin_base() {
    if have_image "$STANDIN_BASE" && [ -z "${TUNESERVE_CI_REBUILD_STANDINS:-}" ]; then
        return
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    local mirror script rootfs=$work/rootfs
    mirror=$(debian_mirror)
    script=/usr/share/debootstrap/scripts/$STANDIN_SUITE
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid # older debootstraps lack newer suites
    echo "   debootstrap --variant=minbase $STANDIN_SUITE from $mirror"
    debootstrap --variant=minbase "$STANDIN_SUITE" "$rootfs" "$mirror" "$script" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap $STANDIN_SUITE from $mirror failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # A mirror that serves a frozen snapshot has Release files past their
    # Valid-Until; the stand-ins' own apt-get must still take them.
    printf '%s\n' '// tuneserve stand-in image: the mirror may serve a frozen snapshot.' \
        'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99tuneserve-standin"
    tar -C "$rootfs" -c . | $DOCKER import --change 'CMD ["/bin/bash"]' - "$STANDIN_BASE" >/dev/null
    rm -rf "$rootfs"
}

# build_standin NAME DOCKERFILE CONTEXT: FROM the stand-in base, cached by name.
build_standin() {
    if have_image "$1" && [ -z "${TUNESERVE_CI_REBUILD_STANDINS:-}" ]; then
        return
    fi
    echo "   building $1 ($2)"
    $DOCKER build --network host --progress plain --build-arg BASE="$STANDIN_BASE" \
        -f "$2" -t "$1" "$3" >"$work/standin.log" 2>&1 \
        || { tail -30 "$work/standin.log" >&2; die "building the stand-in $1 failed"; }
}

step "base images"
build_args=()
if [ -z "${TUNESERVE_CI_STANDINS:-}" ] && pulls "$HUB_BUILDER" && pulls "$HUB_RUNTIME"; then
    echo "   the Hub's: $HUB_BUILDER, $HUB_RUNTIME"
else
    standin_base
    # Where TLS is intercepted, cargo in the builder needs this machine's
    # extra CA certificates (Debian's place for local ones); only the
    # stand-in carries them.
    mkdir -p "$work/builder/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$work/builder/ca-certificates/" 2>/dev/null || true
    build_standin "$STANDIN_BUILDER" scripts/docker/builder-standin.Dockerfile "$work/builder"
    build_args=(--build-arg "BUILDER=$STANDIN_BUILDER" --build-arg "RUNTIME=$STANDIN_BASE")
    echo "   stand-ins (the Hub's do not pull): BUILDER=$STANDIN_BUILDER RUNTIME=$STANDIN_BASE"
fi
if [ -z "${TUNESERVE_CI_STANDINS:-}" ] && pulls "$HUB_POSTGRES"; then
    export TUNESERVE_CI_POSTGRES_IMAGE=$HUB_POSTGRES
else
    standin_base
    build_standin "$STANDIN_POSTGRES" scripts/docker/postgres-standin.Dockerfile scripts/docker
    export TUNESERVE_CI_POSTGRES_IMAGE=$STANDIN_POSTGRES
fi
echo "   PostgreSQL: $TUNESERVE_CI_POSTGRES_IMAGE"

# ---------------------------------------------------------------- build
commit=${TUNESERVE_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
step "docker build -t $IMAGE . ${build_args[*]}"
build_started=$SECONDS
$DOCKER build --network host --progress plain "${build_args[@]}" \
    --build-arg "TUNESERVE_COMMIT=$commit" -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -60 "$work/build.log" >&2; die "docker build failed"; }
build_secs=$((SECONDS - build_started))
grep -E 'Finished .release' "$work/build.log" | sed 's/^/   /' || true
echo "   built in $build_secs s"

step "the image"
image_bytes=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
image_mb=$((image_bytes / 1000000))
echo "   $IMAGE: $image_mb MB"
[ "$($DOCKER image inspect -f '{{.Config.User}}' "$IMAGE")" = tuneserve ] || die "the image's user is not tuneserve"
# shellcheck disable=SC2016 # expanded in the container
$DOCKER run --rm --network none --entrypoint sh "$IMAGE" -c '
    for tool in cc gcc c++ ld rustc cargo curl; do
        if command -v $tool >/dev/null; then echo "$tool is in the runtime image"; exit 1; fi
    done
    for dir in /usr/local/cargo /usr/local/rustup /root/.cargo /src; do
        if [ -e $dir ]; then echo "$dir is in the runtime image"; exit 1; fi
    done
    if ls /var/cache/apt/archives/*.deb >/dev/null 2>&1; then echo "apt caches are in the runtime image"; exit 1; fi
    tuneserve --version' | sed "s/^/   /" || die "the runtime image is not lean"
$DOCKER run --rm --network none --entrypoint cat "$IMAGE" /usr/local/bin/tuneserve >"$work/tuneserve"
binary_mb=$(($(stat -c %s "$work/tuneserve") / 1000000))
if command -v readelf >/dev/null; then
    if readelf -S "$work/tuneserve" | grep -qE '[.](symtab|debug_)'; then
        die "the binary in the image is not stripped"
    fi
fi
echo "   binary: $binary_mb MB, stripped"

# ---------------------------------------------------------------- HTTP helpers
# api METHOD URL [curl args]: the body; dies on a non-2xx answer.
api() {
    local method=$1 url=$2 out code
    shift 2
    out=$(curl -sS --max-time 30 -X "$method" -w '\n%{http_code}' "$@" "$url") \
        || die "$method $url: no answer"
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [[ $code == 2* ]] || die "$method $url answered $code: $out"
    printf '%s\n' "$out"
}
post_json() { api POST "$1" -H 'content-type: application/json' -d "$2"; }
health_ok() { curl -sf --max-time 5 "$1/health" 2>/dev/null | jq -e '.status == "ok"' >/dev/null 2>&1; }
# wait_for SECS WHAT COMMAND...: runs COMMAND every second until it succeeds.
wait_for() {
    local secs=$1 what=$2 end=$((SECONDS + $1))
    shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || die "no $what within $secs s"
        sleep 1
    done
}
# wait_job BASE ID STATUS SECS: the job's JSON once it has STATUS; dies if it
# ends otherwise.
wait_job() {
    local base=$1 id=$2 want=$3 end=$((SECONDS + $4)) job status
    while :; do
        job=$(api GET "$base/jobs/$id")
        status=$(jq -r .status <<<"$job")
        [ "$status" = "$want" ] && { printf '%s\n' "$job"; return; }
        case $status in
            succeeded | failed | cancelled) die "job $id ended $status, not $want: $job" ;;
        esac
        [ "$SECONDS" -lt "$end" ] || die "job $id not $want within $4 s: $job"
        sleep 0.5
    done
}
event_kinds() { api GET "$1/jobs/$2/events" | jq -r '[.data[].kind] | join(" ")'; }
has_checkpoint() { [ "$(api GET "$1/jobs/$2/checkpoints" | jq '.data | length')" -gt 0 ]; }
upload_tweets() {
    api POST "$1/datasets?format=jsonl&name=tweets-$2" -H 'content-type: application/x-ndjson' \
        --data-binary "@$TWEETS/$2.jsonl" | jq -r .id
}
classify_model() {
    post_json "$1/classify" '{"inputs": ["what a great game tonight", "this is awful"]}' \
        | jq -r 'if (.predictions | length) == 2 and all(.predictions[]; .label | IN("negative", "neutral", "positive"))
                 then .model else "bad answer: \(.)" end'
}
# A job of 16 steps, and one of 640 with a checkpoint every 20 (about 25 s
# alone on 2 cores).
QUICK='{"train_subset": 64, "eval_subset": 32, "epochs": 1, "batch_size": 4, "logging_steps": 1, "seed": 42}'
LONG='{"train_subset": 64, "epochs": 40, "batch_size": 4, "logging_steps": 10, "eval_strategy": "no",
       "save_strategy": "steps", "save_steps": 20, "save_total_limit": 1, "seed": 42}'
job_body() { # TRAIN EVAL HYPERPARAMETERS
    jq -nc --arg train "$1" --arg eval "$2" --argjson hyper "$3" \
        '{base_model: "tiny", train_dataset: $train, hyperparameters: $hyper}
         + (if $eval == "" then {} else {eval_dataset: $eval} end)'
}

# ---------------------------------------------------------------- one node
base=http://127.0.0.1:$PORT
step "one node: docker run --read-only --tmpfs /tmp -v $VOLUME:/data (port $PORT)"
$DOCKER rm -f "$SINGLE" >/dev/null 2>&1 || true
$DOCKER volume rm -f "$VOLUME" >/dev/null 2>&1 || true
$DOCKER volume create "$VOLUME" >/dev/null
# The fixture mounted read-only as a base-model folder, as a user mounts theirs.
$DOCKER run -d --name "$SINGLE" --network host --read-only --tmpfs /tmp \
    -v "$VOLUME:/data" -v "$FIXTURE:/base-models/tiny:ro" \
    -e TUNESERVE_HOST=127.0.0.1 -e TUNESERVE_PORT="$PORT" -e TUNESERVE_MODEL_DIR=/base-models \
    "$IMAGE" >/dev/null
wait_for 60 "ok from $base/health" health_ok "$base"
[ "$($DOCKER inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$SINGLE")" = true ] || die "the root filesystem is writable"
pid=$($DOCKER inspect -f '{{.State.Pid}}' "$SINGLE")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/ $//')
[ "$uid" = 10001 ] || die "the server ($cmd) runs as uid $uid, not the image's user tuneserve (10001)"
echo "   /health ok; '$cmd' runs as uid $uid (tuneserve) on a read-only root"

step "walkthrough: upload, a job to succeeded, /classify"
train=$(upload_tweets "$base" train)
test=$(upload_tweets "$base" test)
job=$(post_json "$base/jobs" "$(job_body "$train" "$test" "$QUICK")" | jq -r .id)
done_job=$(wait_job "$base" "$job" succeeded 300)
model=$(jq -r .model <<<"$done_job")
echo "   job $job succeeded: $(jq -c '{steps: .progress.step, eval: .latest_metrics.eval.accuracy, model}' <<<"$done_job")"
answer=$(classify_model "$base")
[ "$answer" = "$model" ] || die "/classify answered with $answer, not the job's model $model"
echo "   /classify answers with $model"

step "docker inspect: the health check (tuneserve health)"
health_status() { [ "$($DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$SINGLE")" = healthy ]; }
wait_for 120 "healthy from docker inspect" health_status
echo "   healthy; the last probe said: $($DOCKER inspect -f '{{json .State.Health.Log}}' "$SINGLE" | jq -r '.[-1].Output' | tr -d '\n')"

step "docker restart keeps datasets, jobs and models"
snapshot() {
    echo "datasets $(api GET "$base/datasets" | jq -c '[.data[].id] | sort')"
    echo "jobs $(api GET "$base/jobs" | jq -c '[.data[] | {id, status, model}] | sort_by(.id)')"
    echo "models $(api GET "$base/models" | jq -c '[.data[].id] | sort')"
}
before=$(snapshot)
$DOCKER restart "$SINGLE" >/dev/null
wait_for 60 "ok from $base/health after the restart" health_ok "$base"
after=$(snapshot)
[ "$before" = "$after" ] || die "the restart lost data: before: $before; after: $after"
answer=$(classify_model "$base")
[ "$answer" = "$model" ] || die "after the restart /classify answered with $answer, not $model"
echo "   the same after the restart: $(wc -l <<<"$after") lists, /classify with $model"

step "docker stop during a job: handed back in the grace period, resumed on start"
long=$(post_json "$base/jobs" "$(job_body "$train" "" "$LONG")" | jq -r .id)
wait_for 120 "checkpoint of job $long" has_checkpoint "$base" "$long"
running=$(api GET "$base/jobs/$long")
[ "$(jq -r .status <<<"$running")" = running ] || die "job $long is not running at its first checkpoint: $running"
stop_started=$SECONDS
$DOCKER stop "$SINGLE" >/dev/null # Docker's default grace period: 10 s, then SIGKILL
stop_secs=$((SECONDS - stop_started))
exit_code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$SINGLE")
[ "$exit_code" = 0 ] || die "docker stop: the process exited $exit_code (137: killed at the grace period's end)"
$DOCKER logs "$SINGLE" 2>&1 | grep -q "handed back to the queue for a shutdown" \
    || die "the server's log does not say it handed the job back"
echo "   running (step $(jq .progress.step <<<"$running") of $(jq .progress.total_steps <<<"$running")) when stopped: stopped in $stop_secs s, exit 0, job handed back"
$DOCKER start "$SINGLE" >/dev/null
wait_for 60 "ok from $base/health after the start" health_ok "$base"
finished=$(wait_job "$base" "$long" succeeded 300)
kinds=$(event_kinds "$base" "$long")
[[ " $kinds " == *" interrupted "* && " $kinds " == *" resumed "* ]] \
    || die "job $long's events lack interrupted/resumed: $kinds"
resumed=$(api GET "$base/jobs/$long/events" | jq -c '[.data[] | select(.kind == "resumed")][0] | {message, data}')
steps=$(api GET "$base/jobs/$long/metrics" | jq '[.train[].step]')
jq -e 'length == (unique | length) and length == 64' <<<"$steps" >/dev/null \
    || die "job $long's logged steps repeat or are missing: $steps"
echo "   job $long succeeded as attempt $(jq .attempt <<<"$finished"); resumed: $resumed"
$DOCKER rm -f "$SINGLE" >/dev/null
$DOCKER volume rm "$VOLUME" >/dev/null

# ---------------------------------------------------------------- compose
step "compose: both files validate"
"${COMPOSE[@]}" -f docker-compose.yml config -q || die "docker-compose.yml does not validate"
"${COMPOSE[@]}" -f docker-compose.cluster.yml config -q || die "docker-compose.cluster.yml does not validate"
compose config -q || die "docker-compose.cluster.yml with scripts/docker/docker-compose.ci.yml does not validate"

b1=http://127.0.0.1:$TUNESERVE_CI_NODE1_PORT
b2=http://127.0.0.1:$TUNESERVE_CI_NODE2_PORT
step "cluster: PostgreSQL ($TUNESERVE_CI_POSTGRES_IMAGE, port $TUNESERVE_CI_PG_PORT) and two nodes ($b1, $b2)"
render_cluster
cluster down -v --remove-orphans >/dev/null 2>&1 || true
compose_up=1
cluster up -d --no-build >"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; die "compose up failed"; }
wait_for 90 "ok from node-1" health_ok "$b1"
wait_for 90 "ok from node-2" health_ok "$b2"
two_nodes() { [ "$(api GET "$b1/nodes" | jq -c '[.data[].id] | sort')" = '["node-1","node-2"]' ]; }
wait_for 30 "node-1 and node-2 in /nodes" two_nodes
echo "   /nodes: $(api GET "$b2/nodes" | jq -c '[.data[] | {id, devices}]')"

step "cluster: jobs submitted to both nodes spread and succeed"
train=$(upload_tweets "$b1" train)
jobs=()
for i in 1 2 3 4; do
    target=$b1
    [ $((i % 2)) -eq 0 ] && target=$b2
    jobs+=("$(post_json "$target/jobs" "$(job_body "$train" "" "$QUICK")" | jq -r .id)")
done
ran_on=()
for i in "${!jobs[@]}"; do
    other=$b2
    [ $((i % 2)) -eq 1 ] && other=$b1 # asked of the node it was not submitted to
    wait_job "$other" "${jobs[$i]}" succeeded 300 >/dev/null
    ran_on+=("$(api GET "$other/jobs/${jobs[$i]}/events" | jq -r '.data[] | select(.kind == "started") | .data.worker | split("/")[0]')")
done
spread=$(printf '%s\n' "${ran_on[@]}" | sort -u | tr '\n' ' ')
[ "$(printf '%s\n' "${ran_on[@]}" | sort -u | wc -l)" -eq 2 ] || die "all four jobs ran on $spread"
echo "   four jobs succeeded, run on: ${ran_on[*]}"

step "cluster: docker kill of the node running a job after its first checkpoint"
long=$(post_json "$b1/jobs" "$(job_body "$train" "" "$LONG")" | jq -r .id)
wait_for 120 "checkpoint of job $long" has_checkpoint "$b2" "$long"
victim=$(api GET "$b2/jobs/$long" | jq -r .node)
case $victim in
    node-1) survivor=$b2 ;;
    node-2) survivor=$b1 ;;
    *) die "job $long runs on '$victim', not node-1 or node-2" ;;
esac
victim_container=$(cluster ps -q "$victim")
$DOCKER kill "$victim_container" >/dev/null
killed=$SECONDS
survivor_id=node-1
[ "$victim" = node-1 ] && survivor_id=node-2
moved() { [ "$(api GET "$survivor/jobs/$long" | jq -r '"\(.status) \(.attempt) \(.node)"')" = "running 2 $survivor_id" ]; }
wait_for 60 "job $long running again on the survivor" moved
echo "   killed $victim; job $long running again (attempt 2) on $survivor_id after $((SECONDS - killed)) s"
finished=$(wait_job "$survivor" "$long" succeeded 300)
[ "$(jq -r .attempt <<<"$finished")" = 2 ] || die "job $long finished as attempt $(jq .attempt <<<"$finished"), not 2"
kinds=$(event_kinds "$survivor" "$long")
[[ " $kinds " == *" resumed "* ]] || die "job $long's events lack resumed: $kinds"
started=$(api GET "$survivor/jobs/$long/events" | jq -r '[.data[] | select(.kind == "started") | .data.worker | split("/")[0]] | join(" ")')
[ "${started##* }" != "$victim" ] || die "job $long's last attempt started on the killed node: $started"
newest=$(jq -r .model <<<"$finished")
on_newest() { [ "$(classify_model "$survivor")" = "$newest" ]; }
wait_for 15 "/classify on the survivor with $newest" on_newest
echo "   job $long succeeded as attempt 2 (started on: $started); /classify on the survivor answers with $newest"

cluster down -v --remove-orphans >/dev/null 2>&1 || die "compose down failed"
compose_up=""
step "docker check passed: image $image_mb MB (binary $binary_mb MB), build $build_secs s, total $((SECONDS - t0)) s"
