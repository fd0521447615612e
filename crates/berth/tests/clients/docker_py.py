"""docker-py 7.2 and testcontainers-python 4.15 against `berth daemon`.

Run by crates/berth/tests/daemon.rs with DOCKER_HOST set to a daemon on a
private root that has busybox:1.35. Standard library unittest; exits
non-zero on any failure.
"""

import io
import os
import sys
import tarfile
import time
import unittest

import docker
from docker import errors

IMAGE = "busybox:1.35"


class DockerPy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = docker.from_env(timeout=60)

    def tearDown(self):
        for c in self.client.containers.list(all=True):
            c.remove(force=True)

    def test_ping_version_info(self):
        self.assertTrue(self.client.ping())
        v = self.client.version()
        self.assertEqual(v["Platform"]["Name"], "berth")
        self.assertEqual(v["ApiVersion"], "1.50")
        info = self.client.info()
        self.assertEqual(info["OSType"], "linux")
        self.assertEqual(info["Swarm"]["LocalNodeState"], "inactive")

    def test_run_returns_output_and_raises_on_failure(self):
        out = self.client.containers.run(IMAGE, ["sh", "-c", "echo hello; echo oops >&2"], remove=True)
        self.assertEqual(out, b"hello\n")
        with self.assertRaises(errors.ContainerError) as cm:
            self.client.containers.run(IMAGE, ["sh", "-c", "echo bad >&2; exit 3"])
        self.assertEqual(cm.exception.exit_status, 3)
        self.assertIn(b"bad", cm.exception.stderr)

    def test_detached_container_logs_exec_wait(self):
        c = self.client.containers.run(
            IMAGE,
            ["sh", "-c", "echo ready; sleep 30"],
            detach=True,
            name="pyc",
            labels={"suite": "docker-py"},
            environment={"GREETING": "hi"},
        )
        deadline = time.time() + 10
        while b"ready" not in c.logs():
            self.assertLess(time.time(), deadline, "no log line")
            time.sleep(0.05)
        c.reload()
        self.assertEqual(c.status, "running")
        self.assertEqual(c.name, "pyc")
        self.assertEqual(c.labels["suite"], "docker-py")
        code, out = c.exec_run(["sh", "-c", "echo $GREETING; exit 0"])
        self.assertEqual((code, out), (0, b"hi\n"))
        code, out = c.exec_run(["sh", "-c", "exit 5"])
        self.assertEqual(code, 5)
        listed = self.client.containers.list(filters={"label": "suite=docker-py"})
        self.assertEqual([x.id for x in listed], [c.id])
        c.stop(timeout=1)
        result = c.wait()
        self.assertEqual(result["StatusCode"], 137)
        exited = self.client.containers.list(all=True, filters={"status": "exited"})
        self.assertIn(c.id, [x.id for x in exited])
        c.remove()
        with self.assertRaises(errors.NotFound):
            self.client.containers.get("pyc")

    def test_logs_stream_follows_to_the_end(self):
        c = self.client.containers.run(
            IMAGE, ["sh", "-c", "for i in 1 2 3; do echo n$i; sleep 0.1; done"], detach=True
        )
        lines = b"".join(c.logs(stream=True, follow=True))
        self.assertEqual(lines, b"n1\nn2\nn3\n")
        self.assertEqual(c.wait()["StatusCode"], 0)

    def test_images_and_volumes(self):
        img = self.client.images.get(IMAGE)
        self.assertIn(IMAGE, img.tags)
        self.assertTrue(img.tag("localhost:5000/py/box", "v1"))
        self.assertIn("localhost:5000/py/box:v1", self.client.images.get(img.id).tags)
        self.client.images.remove("localhost:5000/py/box:v1")
        with self.assertRaises(errors.ImageNotFound):
            self.client.images.get("localhost:5000/py/box:v1")
        vol = self.client.volumes.create("pyvol", labels={"k": "v"})
        self.assertEqual(vol.name, "pyvol")
        self.assertIn("pyvol", [v.name for v in self.client.volumes.list()])
        out = self.client.containers.run(
            IMAGE, ["sh", "-c", "echo kept > /data/f; cat /data/f"], volumes={"pyvol": {"bind": "/data", "mode": "rw"}}, remove=True
        )
        self.assertEqual(out, b"kept\n")
        vol.remove()
        df = self.client.df()
        self.assertGreaterEqual(len(df["Images"]), 1)

    def test_build_from_a_context_archive(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = b'FROM busybox:1.35\nRUN echo built > /b\nCMD ["cat", "/b"]\n'
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        buf.seek(0)
        image, logs = self.client.images.build(fileobj=buf, custom_context=True, tag="pybuilt:1")
        self.assertIn("pybuilt:1", image.tags)
        self.assertTrue(any("stream" in l for l in logs))
        self.assertEqual(self.client.containers.run("pybuilt:1", remove=True), b"built\n")

    def test_errors_are_typed(self):
        with self.assertRaises(errors.NotFound):
            self.client.containers.get("no-such-container")
        with self.assertRaises(errors.APIError) as cm:
            self.client.api.create_container(IMAGE, "true", host_config={"AutoRemove": True, "RestartPolicy": {"Name": "always"}})
        self.assertEqual(cm.exception.status_code, 400)


class Testcontainers(unittest.TestCase):
    def test_a_container_with_a_log_wait_strategy(self):
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        container = (
            DockerContainer(IMAGE)
            .with_command(["sh", "-c", "sleep 0.3; echo service is ready; sleep 30"])
            .waiting_for(LogMessageWaitStrategy("service is ready").with_startup_timeout(20))
        )
        with container as c:
            out, err = c.get_logs()
            self.assertIn(b"service is ready", out)
            code, output = c.exec(["echo", "inside"])
            self.assertEqual((code, output), (0, b"inside\n"))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
