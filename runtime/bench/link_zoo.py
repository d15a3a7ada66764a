#!/usr/bin/env python3
"""A zoo of N tenants whose files are hard links to the tenants of a smaller zoo.

Usage: link_zoo.py SRC DST N

Tenant j of DST is a folder `<arch>-x<j>` holding hard links to the files of SRC's tenant
j mod (SRC's size), and DST/zoo.ron lists the N tenants with that tenant's head. `ptm serve`
registers every tenant into its own host-cache block (and, with a pool, its own pool slot), so
serving DST moves as many bytes per load as N distinct tenants would; only the checkpoint files
on disk (and in the page cache) are shared. Used by device-issue14.sh for the 200-tenant
BERT-base fp16 run (44 GB of packed weights) where 44 GB of distinct files do not fit the
machine's disk and the call's time.
"""
import os
import re
import sys


def main():
    src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = open(os.path.join(src, "zoo.ron")).read()
    head, _, rest = text.partition("models: [")
    body, _, tail = rest.rpartition("]")
    entries = re.findall(r"\(\s*name: \"([^\"]+)\",(.*?)\),", body, re.S)
    if not entries or n < 1:
        sys.exit(f"{src}/zoo.ron: no models found (or N < 1)")
    arch = entries[0][0].rsplit("-t", 1)[0]
    os.makedirs(dst, exist_ok=True)
    out = []
    for j in range(n):
        name, fields = entries[j % len(entries)]
        new = f"{arch}-x{j:04d}"
        d = os.path.join(dst, new)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(os.path.join(src, name)):
            target = os.path.join(d, f)
            if not os.path.exists(target):
                os.link(os.path.join(src, name, f), target)
        out.append(f"        (\n            name: \"{new}\",{fields}),\n")
    with open(os.path.join(dst, "zoo.ron"), "w") as f:
        f.write(head + "models: [\n" + "".join(out) + "    ]" + tail)
    print(f"{dst}: {n} tenants linked to the {len(entries)} of {src}")


if __name__ == "__main__":
    main()
