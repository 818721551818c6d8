#!/usr/bin/env python3
"""Compare two run folders (or snapshot folders) byte for byte, masking what may differ between two
runs of the same computation: wall times, throughput, the commit that wrote a file, lock-file PIDs
and run-folder paths (and any key given with --ignore KEY). Checkpoints: tensor bytes exactly, metadata JSON masked. Exit 1 on a
difference, listing each one."""
import json
import re
import struct
import sys
from pathlib import Path

VOLATILE_KEYS = {"wall_s", "images_per_s", "elapsed_s", "written_by", "started", "finished"}
IGNORED_KEYS = set()
WRITER = re.compile(r"rescnn \d+\.\d+\.\d+ \([0-9a-f]+\)")
VOLATILE_TEXT = [
    (re.compile(r"\d+(\.\d+)? ?(s|ms|min|img/s|images/s|training images/s)\b"), "<time>"),
    (re.compile(r"rescnn \d+\.\d+\.\d+ \([0-9a-f]+\)"), "rescnn <commit>"),
]


def mask_json(v):
    if isinstance(v, dict):
        return {
            k: ("<masked>" if k in VOLATILE_KEYS else mask_json(x))
            for k, x in v.items()
            if k not in IGNORED_KEYS
        }
    if isinstance(v, list):
        return [mask_json(x) for x in v]
    if isinstance(v, str) and WRITER.fullmatch(v):
        return "<commit>"
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return mask_json(json.loads(v))
        except ValueError:
            return v
    return v


def mask_text(s, root):
    s = s.replace(str(root), "<run>")
    for pattern, repl in VOLATILE_TEXT:
        s = pattern.sub(repl, s)
    return s


def canonical(path, root):
    data = path.read_bytes()
    name = path.name
    if name == ".lock":
        return b"<lock>"
    if name.endswith(".safetensors"):
        n = struct.unpack("<Q", data[:8])[0]
        header = mask_json(json.loads(data[8 : 8 + n]))
        return json.dumps(header, sort_keys=False).encode() + b"\0" + data[8 + n :]
    if name.endswith(".json"):
        return json.dumps(mask_json(json.loads(data)), indent=1).encode()
    if name.endswith(".jsonl"):
        return b"\n".join(
            json.dumps(mask_json(json.loads(line))).encode() for line in data.splitlines() if line
        )
    if name.endswith((".md", ".log", ".txt", ".toml", ".svg")) or name in ("STATUS",):
        return mask_text(data.decode("utf-8", "replace"), root).encode()
    return data


def main():
    args = sys.argv[1:]
    # `--ignore KEY`: leave out a JSON key that a deliberate change added or changed (say so).
    while "--ignore" in args:
        i = args.index("--ignore")
        IGNORED_KEYS.add(args[i + 1])
        del args[i : i + 2]
    a, b = Path(args[0]), Path(args[1])
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = 0
    for rel in sorted(files_a ^ files_b):
        print(f"only in {'first' if rel in files_a else 'second'}: {rel}")
        bad += 1
    for rel in sorted(files_a & files_b):
        ca, cb = canonical(a / rel, a), canonical(b / rel, b)
        if ca != cb:
            bad += 1
            la, lb = ca.splitlines(), cb.splitlines()
            first = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
            show = lambda l: (l[first][:200] if first < len(l) else b"<end>").decode("utf-8", "replace")
            print(f"DIFFERS: {rel} (line {first + 1}):\n  - {show(la)}\n  + {show(lb)}")
    print(f"{len(files_a & files_b)} files compared, {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
