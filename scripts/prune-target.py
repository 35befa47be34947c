#!/usr/bin/env python3
"""Keeps the shared build cache from filling the disk: builds of this workspace's own crates
and test targets in target/debug/deps pile up (one set per clone path and feature set).
Those not written for two days are deleted; anything a run wrote recently stays, and so do
registry crates (also one whose name a test target shares, e.g. `metrics`)."""
import json
import os
import re
import subprocess
import sys
import time

target = sys.argv[1]
deps = os.path.join(target, "debug", "deps")
if not os.path.isdir(deps):
    sys.exit(0)
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps"],
    check=True, capture_output=True, text=True).stdout)
ours = {t["name"].replace("-", "_") for p in meta["packages"] for t in p["targets"]}
with open("Cargo.lock", encoding="utf-8") as lock:
    registry = {n.replace("-", "_") for n in re.findall(r'^name = "([^"]+)"', lock.read(), re.M)}
registry -= {p["name"].replace("-", "_") for p in meta["packages"]}
names = ours - registry
cutoff = time.time() - 2 * 24 * 3600
freed = 0
for f in os.listdir(deps):
    m = re.match(r"^(lib)?(.+?)-([0-9a-f]{16})(\..*)?$", f)
    path = os.path.join(deps, f)
    if m and m.group(2) in names and os.path.getmtime(path) < cutoff:
        freed += os.path.getsize(path)
        os.remove(path)
print(f"pruned {freed / 1e9:.1f} GB of stale builds from {deps}")
