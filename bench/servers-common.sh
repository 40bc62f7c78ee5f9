# Shared by the comparison scripts (sourced, not run): the watchdog that kills
# recorded servers if the script itself is SIGKILLed, and core pinning.
# Expects $tmp (the script's temporary directory, holding one NAME.pid file per
# server it started).

# If the sourcing script is killed outright (SIGKILL, as a test runner's
# timeout may do), its EXIT trap never runs: this watchdog then kills the
# servers it recorded and removes $tmp.
start_watchdog() {
  (
    while kill -0 $$ 2>/dev/null; do sleep 1; done
    for f in "$tmp"/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$tmp"
  ) </dev/null >/dev/null 2>&1 &
}

# Servers on core 0, the load generator on core 1, when there are two cores.
pin_server="" pin_load=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0" pin_load="taskset -c 1"
fi
