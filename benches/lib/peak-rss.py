"""Resident memory of the processes whose command line holds one of the given folders as an
argument (a server's or an etcd member's --data-dir), matched afresh on every sample so that a
restarted process is followed.

  peak-rss.py STOP DIR...   samples every 50 ms until the file STOP exists, then prints each
                            folder's peak VmRSS in MiB (JSON)
  peak-rss.py --now DIR...  prints each folder's VmRSS and VmHWM (peak since start) in MiB (JSON)
"""
import json
import os
import sys
import time


def sample(dirs):
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        # The folder must follow --data-dir: this sampler names the folders too.
        data_dirs = {b for a, b in zip(args, args[1:]) if a == b"--data-dir"}
        for d in dirs:
            if d.encode() in data_dirs and "VmRSS" in status:
                mib = lambda key: round(int(status[key].split()[0]) / 1024, 1)
                found[d] = {"rss": mib("VmRSS"), "hwm": mib("VmHWM")}
    return found


stop, dirs = sys.argv[1], sys.argv[2:]
name = os.path.basename
if stop == "--now":
    print(json.dumps({name(d): v for d, v in sample(dirs).items()}))
    sys.exit(0)
peak = {d: 0.0 for d in dirs}
while True:
    for d, v in sample(dirs).items():
        peak[d] = max(peak[d], v["rss"])
    if os.path.exists(stop):
        break
    time.sleep(0.05)
print(json.dumps({name(d): v for d, v in peak.items()}))
