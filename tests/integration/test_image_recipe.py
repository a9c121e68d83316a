"""The container image recipe (deploy/docker) against the real binaries.

There is no Docker daemon on CI machines, so the image itself is not built
here. What can go wrong silently is checked instead: every shared library
that a built daemon or mailctl links must come from a Debian package the
runtime stage installs (deploy/docker/runtime-packages.txt) or one that
debian:12-slim already has; and the Dockerfile copies exactly the daemons
the chart runs.

Needs: ldd, dpkg (both in every Debian system).
"""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402

DOCKER = os.path.join(mgtest.SOURCE_DIR, "deploy", "docker")
DAEMONS = ["tenantd", "identityd", "mailstored", "relayd", "accessd"]
# Packages debian:12-slim ships (Priority: required/important libraries).
SLIM_BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libcrypt1", "libselinux1",
             "libpcre2-8-0", "libzstd1", "liblz4-1", "libbz2-1.0", "liblzma5", "libgcrypt20",
             "libgpg-error0", "libcap2", "libsystemd0", "libudev1"}


def runtime_packages():
    with open(os.path.join(DOCKER, "runtime-packages.txt")) as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


_OWNERS = {}


def package_of(path):
    """The Debian package owning a library path (usr-merge aware; cached)."""
    if path not in _OWNERS:
        _OWNERS[path] = _dpkg_owner(path)
    return _OWNERS[path]


def _dpkg_owner(path):
    real = os.path.realpath(path)
    for candidate in (path, real, re.sub(r"^/usr", "", path), re.sub(r"^/usr", "", real)):
        r = subprocess.run(["dpkg", "-S", candidate], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def linked_libraries(binary):
    out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


class ImageRecipeTest(unittest.TestCase):
    def test_runtime_stage_has_every_linked_library(self):
        available = runtime_packages() | SLIM_BASE
        binaries = [b for b in DAEMONS + ["mailctl"] if os.path.exists(mgtest.binary(b))]
        self.assertIn("mailctl", binaries)
        self.assertIn("tenantd", binaries)
        missing = {}
        for name in binaries:
            for lib in linked_libraries(mgtest.binary(name)):
                package = package_of(lib)
                if package is None:
                    missing.setdefault(name, []).append(lib + " (no Debian package)")
                elif package not in available:
                    missing.setdefault(name, []).append("%s (%s)" % (package, lib))
        self.assertEqual(missing, {}, "add these packages to deploy/docker/runtime-packages.txt")

    def test_dockerfile_ships_every_daemon_and_mailctl(self):
        with open(os.path.join(DOCKER, "Dockerfile")) as f:
            dockerfile = f.read()
        for name in DAEMONS + ["mailctl"]:
            self.assertIn("/build/bin/%s " % name, dockerfile.replace("\\\n", " ") + " ", name)
            self.assertRegex(dockerfile, r"ninja -C /build [^\n]*\b%s\b" % name)
        self.assertIn("USER 10001", dockerfile)
        for package in runtime_packages():
            r = subprocess.run(["apt-cache", "show", package], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 0, "%s is not a Debian 12 package" % package)


if __name__ == "__main__":
    unittest.main()
