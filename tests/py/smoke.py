"""docker-py smoke test against berthd (DOCKER_HOST points at it)."""
import io
import sys

import docker

client = docker.from_env(version="auto")
assert client.ping()
print("version", client.version()["ApiVersion"])

# images: load, tag, remove
with open(sys.argv[1], "rb") as f:
    data = f.read()
images = client.images.load(data)
assert any("pybox:latest" in t for img in images for t in img.tags), images
img = client.images.get("pybox:latest")
assert img.tag("pybox", "v2")
assert "pybox:v2" in client.images.get("pybox:v2").tags

# containers: run with output, logs, exec, remove
out = client.containers.run("pybox:latest", ["echo", "hello from docker-py"], remove=True)
assert out == b"hello from docker-py\n", out
c = client.containers.run("pybox:latest", ["sh", "-c", "echo started; sleep 100"], detach=True, name="py1")
c.reload()
assert c.status == "running", c.status
res = c.exec_run(["sh", "-c", "echo exec-out; exit 3"])
assert res.exit_code == 3 and res.output == b"exec-out\n", res
for _ in range(100):
    if b"started" in c.logs():
        break
assert c.logs() == b"started\n", c.logs()
assert [x.name for x in client.containers.list()] == ["py1"]
c.stop(timeout=1)
c.reload()
assert c.status == "exited"
assert c.wait()["StatusCode"] == 137
c.remove()
assert client.containers.list(all=True) == []

# build: the classic /build API with a context directory, build args and a failing step
import tempfile, os
with tempfile.TemporaryDirectory() as ctx:
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM pybox:latest\nARG WHO=nobody\nCOPY msg.txt /msg.txt\nRUN echo \"hi $WHO\" >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n")
    with open(os.path.join(ctx, "msg.txt"), "w") as f:
        f.write("from context\n")
    img, logs = client.images.build(path=ctx, tag="pybuilt:1", buildargs={"WHO": "py"}, rm=True)
    assert "pybuilt:1" in img.tags, img.tags
    assert any("Successfully built" in l.get("stream", "") for l in logs), list(logs)
    out = client.containers.run("pybuilt:1", remove=True)
    assert out == b"from context\nhi py\n", out
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM pybox:latest\nRUN exit 5\n")
    try:
        client.images.build(path=ctx, tag="pybad")
        raise AssertionError("a failing RUN must fail the build")
    except docker.errors.BuildError as e:
        assert "returned a non-zero code: 5" in str(e), e
client.images.remove("pybuilt:1")

client.images.remove("pybox:v2")
client.images.remove("pybox:latest")
assert all("pybox:latest" not in i.tags for i in client.images.list())
print("docker-py smoke: ok")
