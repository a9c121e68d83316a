"""Where things are in the source tree."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES_FILE = os.path.join(ROOT, "tools", "packages.txt")
BUILD_DIR = os.environ.get("MAILGRID_BUILD_DIR", os.path.join(ROOT, "build"))
BIN_DIR = os.path.join(BUILD_DIR, "bin")
DEFAULT_DATA = os.path.join(ROOT, ".mailgrid")


def binary(name):
    return os.path.join(BIN_DIR, name)
