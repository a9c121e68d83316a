"""Debian packages: find the missing ones and install them when we are root."""
import os
import shutil
import subprocess
import sys

from . import paths


def wanted():
    """Package names from tools/packages.txt. A line "@CMD package" names a
    package wanted only while no command CMD is on the PATH."""
    names = []
    with open(paths.PACKAGES_FILE) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("@"):
                command, package = line[1:].split()
                if shutil.which(command):
                    continue
                line = package
            names.append(line)
    return names


def missing(names):
    out = []
    for name in names:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if "install ok installed" not in r.stdout:
            out.append(name)
    return out


def ensure():
    """Installs what is missing, or exits naming the exact command to run."""
    need = missing(wanted())
    if not need:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + need
    if os.geteuid() != 0:
        sys.exit("mailgrid: missing Debian packages; run:\n  sudo apt-get update && sudo "
                 + " ".join(cmd))
    print("mailgrid: installing " + " ".join(need), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    # Debian starts redis-server as a system service on install; ours are
    # private per cluster, so the system one is not needed.
    subprocess.run(["systemctl", "disable", "--now", "redis-server"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
