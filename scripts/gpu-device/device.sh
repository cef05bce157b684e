#!/bin/bash
# Copy node-agent (stripped), this script and gpuload.py into .device-carry/ of the checkout the
# device machine receives, then run `bash .device-carry/device.sh` there with $OUT set. It writes
# nvidia-smi and node-agent outputs side by side (idle, then under gpuload.py), the cgroup layout, and
# the no-NVML / gpu=off checks. compare.py (run in $OUT) prints the side-by-side table.
# Runs on the device machine: nvidia-smi and node-agent side by side, idle and under load.
set -u
A=.device-carry/node-agent
Q=index,uuid,name,pci.bus_id,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,driver_version
export OTEL_METRICS_EXPORTER=console NODE_AGENT_CONSOLE_FORMAT=otlp-json
{ uname -a; head -3 /etc/os-release; ldd --version | head -1; nvidia-smi -L; which python3; } > $OUT/env.txt 2>&1
{ echo '## mount | grep cgroup'; mount | grep cgroup; echo '## cat /proc/self/cgroup'; cat /proc/self/cgroup;
  echo '## ls /sys/fs/cgroup'; ls /sys/fs/cgroup; echo '## /sys/fs/cgroup/cgroup.controllers'; cat /sys/fs/cgroup/cgroup.controllers;
  echo '## /sys/fs/cgroup/cgroup.subtree_control'; cat /sys/fs/cgroup/cgroup.subtree_control;
  echo '## cat /proc/1/cgroup'; cat /proc/1/cgroup; echo '## grep cgroup /proc/self/mountinfo'; grep cgroup /proc/self/mountinfo;
  echo '## stat -fc %T /sys/fs/cgroup'; stat -fc %T /sys/fs/cgroup; } > $OUT/cgroup-layout.txt 2>&1
mkdir -p $OUT/proc-driver-nvidia
cp /proc/driver/nvidia/version $OUT/proc-driver-nvidia/version 2>/dev/null
for d in /proc/driver/nvidia/gpus/*; do cat $d/information > "$OUT/proc-driver-nvidia/information-$(basename $d | tr : _)"; done
{ ls -la /sys/class/drm; for c in /sys/class/drm/card*/device; do echo "$c: $(cat $c/vendor $c/device $c/class 2>/dev/null | tr '\n' ' ') | $(tr '\n' ' ' < $c/uevent)"; ls $c; done; } > $OUT/sys-class-drm.txt 2>&1
ldconfig -p | grep -i -e nvidia-ml -e libcuda > $OUT/nvml-libs.txt 2>&1
side() {
  p=$1
  nvidia-smi --query-gpu=$Q --format=csv,nounits > $OUT/$p-query-before.csv
  $A check --json > $OUT/$p-check.json 2> $OUT/$p-check.stderr
  nvidia-smi --query-gpu=$Q --format=csv,nounits > $OUT/$p-query-after.csv
  nvidia-smi --query-gpu=power.draw.average,power.draw.instant,memory.reserved,memory.free --format=csv > $OUT/$p-power-fields.csv 2>&1
  nvidia-smi -q -x > $OUT/$p-nvidia-smi-q.xml
  nvidia-smi --query-gpu=timestamp,$Q --format=csv,nounits -lms 500 > $OUT/$p-query-loop.csv & L=$!
  AGENT_SAMPLE_INTERVAL_MIN_SEC=2 AGENT_SAMPLE_INTERVAL_MAX_SEC=2 timeout -s TERM 7 $A run > $OUT/$p-console.jsonl 2> $OUT/$p-console.stderr
  kill $L; wait $L 2>/dev/null
}
side idle
python3 .device-carry/gpuload.py 20 40 > $OUT/load.log 2>&1 & G=$!
sleep 8
side load
wait $G
NODE_AGENT_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 $A check --json > $OUT/no-nvml-check.json 2> $OUT/no-nvml-check.stderr
NODE_AGENT_GPU=off $A check --json > $OUT/gpu-off-check.json 2>&1
{ time (for i in $(seq 10); do nvidia-smi --query-gpu=$Q --format=csv > /dev/null; done); } 2> $OUT/cost-nvidia-smi-x10.txt
echo done
