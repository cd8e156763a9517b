# Sourced by the scripts that start engram-server with --ready_file (the
# bench scripts and scripts/gpu-check.sh): waiting for the file and reading
# its ports, {"grpc_port":P,"metrics_port":M}, with coreutils alone, so that
# they also run where there is no python3 (the GPU machine).

# wait_ready FILE PID [SECONDS]: 0 once FILE is written; 1 when PID exits
# first or SECONDS (default 20) pass.
wait_ready() {
  local file=$1 pid=$2 tries=$((${3:-20} * 5))
  for _ in $(seq "$tries"); do
    [[ -s $file ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  [[ -s $file ]]
}

# ready_port FILE KEY: the port KEY (grpc_port or metrics_port) in FILE.
ready_port() {
  sed -E "s/.*\"$2\":\"?([0-9]+).*/\\1/" "$1"
}
