"""Configure once, then build incrementally with Ninja."""
import os
import subprocess
import sys

from . import paths


def build(werror=False, targets=()):
    if not os.path.exists(os.path.join(paths.BUILD_DIR, "build.ninja")):
        cmd = ["cmake", "-S", paths.ROOT, "-B", paths.BUILD_DIR, "-G", "Ninja",
               "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
        if werror:
            cmd.append("-DMAILGRID_WERROR=ON")
        run(cmd)
    jobs = os.environ.get("MAILGRID_JOBS", str(os.cpu_count() or 2))
    run(["ninja", "-C", paths.BUILD_DIR, "-j", jobs] + list(targets))


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        sys.exit("mailgrid: command failed (exit %d): %s" % (r.returncode, " ".join(cmd)))
