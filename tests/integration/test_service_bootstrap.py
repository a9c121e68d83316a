"""The bootstrap every daemon runs (libs/rpc/service_main), exercised through
echod, a daemon built on it: bad input stops it at start with one clear line
and a non-zero exit; a good start serves health and /metrics; SIGTERM drains.
"""
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402


def run_echod(*args, env=None):
    r = subprocess.run([mgtest.binary("echod")] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    return r.returncode, r.stderr


class BadInputStopsAtStart(unittest.TestCase):
    def assertOneClearLine(self, code, stderr, needle):
        self.assertNotEqual(code, 0)
        lines = [l for l in stderr.splitlines() if "level=error" in l]
        self.assertEqual(len(lines), 1, stderr)
        self.assertIn(needle, lines[0])

    def test_unknown_flag(self):
        code, err = run_echod("--no-such-flag=1")
        self.assertEqual(code, 2)
        self.assertOneClearLine(code, err, "unknown flag --no-such-flag")

    def test_unreadable_config_file(self):
        code, err = run_echod("--config=/nonexistent/echod.conf")
        self.assertOneClearLine(code, err, "cannot read /nonexistent/echod.conf")

    def test_bad_value_from_environment(self):
        env = dict(os.environ, MAILGRID_DRAIN_TIMEOUT="forever")
        code, err = run_echod(env=env)
        self.assertOneClearLine(code, err, "MAILGRID_DRAIN_TIMEOUT")

    def test_port_in_use(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            code, err = run_echod("--listen=127.0.0.1:%d" % port)
        self.assertOneClearLine(code, err, "port in use: 127.0.0.1:%d" % port)

    def test_missing_tls_file(self):
        code, err = run_echod("--tls-cert=/nonexistent/c.pem", "--tls-key=/nonexistent/k.pem")
        self.assertOneClearLine(code, err, "--tls-cert: cannot read /nonexistent/c.pem")


class ServesAndDrains(unittest.TestCase):
    def test_health_metrics_and_sigterm(self):
        grpc_port, metrics_port = mgtest.free_port(), mgtest.free_port()
        conf = os.path.join(mgtest.temp_dir("echod"), "echod.conf")
        with open(conf, "w") as f:
            f.write("# from the config file\nprefix = hello-\n")
        p = subprocess.Popen([mgtest.binary("echod"), "--config", conf,
                              "--listen=127.0.0.1:%d" % grpc_port,
                              "--metrics-listen=127.0.0.1:%d" % metrics_port],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            mgtest.eventually(lambda: mgtest.grpc_health("127.0.0.1:%d" % grpc_port) == "SERVING",
                              "echod SERVING")
            status, body = mgtest.http_get("http://127.0.0.1:%d/metrics" % metrics_port)
            self.assertEqual(status, 200)
            self.assertIn('mailgrid_build_info{service="echod"', body)
            self.assertIn("process_resident_memory_bytes", body)
            # The health check itself went through the metrics interceptor.
            self.assertIn('grpc_server_handled_total{grpc_code="OK",grpc_method="Check",'
                          'grpc_service="grpc.health.v1.Health"}', body)
        finally:
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        # The effective config was printed at start, with where each value came from.
        self.assertIn("option=prefix value=hello- source=file", err)
        self.assertIn("msg=draining reason=SIGTERM", err)
        self.assertIn("msg=stopped", err)


if __name__ == "__main__":
    unittest.main()
