#!/usr/bin/env python3
"""What each crate adds to the Worker's Wasm: the code bytes of its functions,
from a build that keeps the name section (MAILHOOK_KEEP_NAMES=1 bash scripts/build.sh).

Usage: python3 bench/wasm-crates.py [build/index_bg.wasm] [crate ...]
Prints JSON: the module's code bytes, and per crate the functions and code bytes whose
names start with `crate::` or `<crate::` (generic code is counted where it was instantiated:
a `Vec<url::Host>` method counts as `alloc`'s). Data segments (such as idna's tables) are not
attributed by name; they are reported as one total."""
import json
import sys


def leb(b, i):
    n = shift = 0
    while True:
        x = b[i]
        i += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return n, i


def sections(b):
    i = 8
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        yield sid, b[j : j + size]
        i = j + size


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "build/index_bg.wasm"
    crates = sys.argv[2:] or ["url", "idna", "icu_normalizer", "icu_properties", "icu_collections", "icu_provider", "ipnet", "time", "subtle", "mail_parser", "encoding_rs", "serde_json", "worker", "mailhook"]
    b = open(path, "rb").read()
    imported_funcs = 0
    bodies = []
    names = {}
    data = 0
    for sid, s in sections(b):
        if sid == 2:  # imports: count imported functions (they take the first indices)
            n, i = leb(s, 0)
            for _ in range(n):
                for _ in range(2):
                    ln, i = leb(s, i)
                    i += ln
                kind = s[i]
                i += 1
                if kind == 0:
                    _, i = leb(s, i)
                    imported_funcs += 1
                elif kind == 1:
                    i += 1
                    flags, i = leb(s, i)
                    _, i = leb(s, i)
                    if flags & 1:
                        _, i = leb(s, i)
                elif kind == 2:
                    flags, i = leb(s, i)
                    _, i = leb(s, i)
                    if flags & 1:
                        _, i = leb(s, i)
                elif kind == 3:
                    i += 2
                elif kind == 4:
                    i += 1
                    _, i = leb(s, i)
        elif sid == 10:  # code
            n, i = leb(s, 0)
            for _ in range(n):
                size, j = leb(s, i)
                bodies.append(size + (j - i))
                i = j + size
        elif sid == 11:
            data += len(s)
        elif sid == 0:
            ln, i = leb(s, 0)
            if s[i : i + ln] != b"name":
                continue
            i += ln
            while i < len(s):
                sub = s[i]
                size, j = leb(s, i + 1)
                if sub == 1:
                    n, k = leb(s, j)
                    for _ in range(n):
                        idx, k = leb(s, k)
                        ln, k = leb(s, k)
                        names[idx] = s[k : k + ln].decode("utf-8", "replace")
                        k += ln
                i = j + size
    total = sum(bodies)
    out = {"file": path, "code_bytes": total, "data_bytes": data, "named_functions": len(names), "crates": {}}
    for c in crates:
        fns = [sz for k, sz in enumerate(bodies) if any(names.get(k + imported_funcs, "").startswith(p) for p in (f"{c}::", f"<{c}::", f"{c}["))]
        out["crates"][c] = {"functions": len(fns), "code_bytes": sum(fns)}
    print(json.dumps(out, indent=2))


main()
