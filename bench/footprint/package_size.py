"""Bytes one installed distribution takes on disk: `python package_size.py <distribution>`.

Run inside our image (bench/harness/footprint.py mounts this directory), so that the footprint
table can say what a dependency adds to the image, e.g. the /docs page's Swagger UI files. It
counts every file under the top-level directories the distribution's RECORD names (its package
and its .dist-info), bytecode compiled at build time included: what the image's layer holds.
"""

import importlib.metadata
import os
import sys


def size(name: str) -> int:
    dist = importlib.metadata.distribution(name)
    base = dist.locate_file("")
    tops = {f.parts[0] for f in dist.files or () if f.parts[0] != ".."}
    total = 0
    for top in tops:
        path = os.path.join(base, top)
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


if __name__ == "__main__":
    print(size(sys.argv[1]))
