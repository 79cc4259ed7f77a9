#!/usr/bin/python3
"""Stands in for ssh in the gerrit reporter's tests: records its arguments
(everything after DIR) as DIR/NNNNNN.json, then exits with the code in
DIR/exit (0 when there is none), printing DIR/say if present."""

import json
import os
import sys

out = sys.argv[1]
code = 0
if os.path.exists(os.path.join(out, "exit")):
    with open(os.path.join(out, "exit")) as f:
        code = int(f.read().strip() or "0")
if os.path.exists(os.path.join(out, "say")):
    with open(os.path.join(out, "say")) as f:
        sys.stdout.write(f.read())
if code == 0:
    n = len([f for f in os.listdir(out) if f.endswith(".json")]) + 1
    name = os.path.join(out, "%06d.json" % n)
    with open(name + ".tmp", "w") as f:
        json.dump(sys.argv[2:], f)
    os.rename(name + ".tmp", name)
sys.exit(code)
