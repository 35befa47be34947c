#!/usr/bin/env python3
"""Keeps the shared build cache from filling the disk: of each build of this workspace's own
crates and test targets in target/debug/deps (one set accumulates per clone path and feature
set), only the newest of each name and kind stays. Registry crates are left alone."""
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

target = sys.argv[1]
deps = os.path.join(target, "debug", "deps")
if not os.path.isdir(deps):
    sys.exit(0)
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps"],
    check=True, capture_output=True, text=True).stdout)
names = {t["name"].replace("-", "_") for p in meta["packages"] for t in p["targets"]}
groups = defaultdict(list)
for f in os.listdir(deps):
    m = re.match(r"^(lib)?(.+?)-([0-9a-f]{16})(\..*)?$", f)
    if m and m.group(2) in names:
        groups[(m.group(2), m.group(4) or "")].append(os.path.join(deps, f))
freed = 0
for files in groups.values():
    files.sort(key=os.path.getmtime, reverse=True)
    for f in files[1:]:
        freed += os.path.getsize(f)
        os.remove(f)
print(f"pruned {freed / 1e9:.1f} GB of stale builds from {deps}")
