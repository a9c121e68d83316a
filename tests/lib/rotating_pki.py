"""A throw-away CA whose certificates are rotated the way Kubernetes rotates a
Secret volume: each certificate in its own directory, then an atomic swap of
a symlink (the kubelet's `..data`). Used by the certificate-reload tests of
libs/rpc (gRPC listeners) and libs/netserver (SMTP/IMAP/POP3 listeners).
Needs the openssl CLI.
"""
import os
import shutil
import subprocess


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


class RotatingPki:
    """A P-256 CA in `root` and the certificates it signs, each in root/<name>/
    as tls.crt, tls.key and ca.crt."""

    def __init__(self, root, subject_alt_name, extended_key_usage, ca_cn="test-ca"):
        self.root = root
        with open(os.path.join(root, "ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (subject_alt_name, extended_key_usage))
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", os.path.join(root, "ca.key"), "-out", os.path.join(root, "ca.pem"),
                "-days", "2", "-subj", "/CN=" + ca_cn)

    def issue(self, name, cn, days=2):
        d = os.path.join(self.root, name)
        os.makedirs(d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", os.path.join(d, "tls.key"), "-out", os.path.join(d, "csr.pem"),
                "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", os.path.join(d, "csr.pem"),
                "-CA", os.path.join(self.root, "ca.pem"), "-CAkey", os.path.join(self.root, "ca.key"),
                "-CAcreateserial", "-days", str(days), "-out", os.path.join(d, "tls.crt"),
                "-extfile", os.path.join(self.root, "ext"))
        shutil.copy(os.path.join(self.root, "ca.pem"), os.path.join(d, "ca.crt"))
        return d

    def point(self, link, name):
        """Atomically makes root/link point at root/name."""
        tmp = os.path.join(self.root, link + ".tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.path.join(self.root, name), tmp)
        os.replace(tmp, os.path.join(self.root, link))
