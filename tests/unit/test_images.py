"""The image catalog: reference normalisation, built-in images, user catalog, pull errors."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

from kubelite.images import DEFAULT_PATH, ImageNotFound, normalise, resolve, split_reference


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("KUBELITE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", ("docker.io/library/busybox", "latest")),
        ("busybox:1.36", ("docker.io/library/busybox", "1.36")),
        ("docker.io/library/busybox:1.36", ("docker.io/library/busybox", "1.36")),
        ("index.docker.io/library/busybox", ("docker.io/library/busybox", "latest")),
        ("bitnami/redis:7", ("docker.io/bitnami/redis", "7")),
        ("registry.k8s.io/e2e-test-images/agnhost:2.53", ("registry.k8s.io/e2e-test-images/agnhost", "2.53")),
        ("localhost:5000/app", ("localhost:5000/app", "latest")),
        ("localhost/app:v1", ("localhost/app", "v1")),
        ("nginx@sha256:" + "a" * 64, ("docker.io/library/nginx", "sha256:" + "a" * 64)),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref) == expected


def test_normalise_keeps_digests() -> None:
    assert normalise("busybox") == "docker.io/library/busybox:latest"
    assert normalise("x@sha256:" + "b" * 64) == "docker.io/library/x@sha256:" + "b" * 64


@pytest.mark.parametrize(
    "ref",
    [
        "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "registry.k8s.io/e2e-test-images/agnhost:2.40",
        "k8s.gcr.io/e2e-test-images/agnhost:2.32",
    ],
)
def test_agnhost_runs_the_python_implementation(ref: str) -> None:
    image = resolve(ref)
    # The real image's ENTRYPOINT ["/agnhost"] and CMD ["pause"]: no args runs pause.
    assert image.entrypoint == [sys.executable, "-m", "kubelite.images.agnhost", "--argv0=/agnhost"]
    assert image.cmd == ["pause"]
    assert image.env == {"PATH": DEFAULT_PATH}
    assert image.name == ref
    assert image.host_argv(["/agnhost-2", "entrypoint-tester", "x"]) == [
        sys.executable, "-m", "kubelite.images.agnhost", "--argv0=/agnhost-2", "entrypoint-tester", "x"]


def test_pause_images() -> None:
    for ref in ("kubelite/pause", "registry.k8s.io/pause:3.10"):
        assert resolve(ref).entrypoint == [sys.executable, "-m", "kubelite.images.pause"]


def test_busybox_puts_its_applets_first_on_path(cache_dir: pathlib.Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        with pytest.raises(ImageNotFound, match='"busybox", which is not installed'):
            resolve("busybox")
        return
    for ref in ("busybox", "busybox:1.36", "docker.io/library/busybox:latest"):
        image = resolve(ref)
        assert (image.entrypoint, image.cmd) == ([], ["sh"])
        applets, rest = image.env["PATH"].split(":", 1)
        assert rest == DEFAULT_PATH
        assert pathlib.Path(applets).is_relative_to(cache_dir)
        for applet in ("sh", "wget", "nslookup", "hostname"):
            assert os.path.realpath(os.path.join(applets, applet)) == os.path.realpath(busybox)
    assert image.name == "docker.io/library/busybox:latest"
    # Built once: a second resolve reuses the same directory.
    assert len(list((cache_dir / "bin").iterdir())) == 1


def test_python_image() -> None:
    image = resolve("python:3.12-slim")
    assert image.cmd == ["python3"]
    bin_dir = image.env["PATH"].split(":", 1)[0]
    assert os.access(os.path.join(bin_dir, "python"), os.X_OK)
    assert os.access(os.path.join(bin_dir, "python3"), os.X_OK)


@pytest.mark.parametrize(("ref", "program"), [("redis:7", "redis-server"), ("nginx:1.27", "nginx")])
def test_host_program_images(ref: str, program: str) -> None:
    if shutil.which(program, path=DEFAULT_PATH) is None and shutil.which(program) is None:
        with pytest.raises(ImageNotFound) as err:
            resolve(ref)
        assert str(err.value) == (
            f'Failed to pull image "{ref}": the kubelite image catalog maps it to the host program '
            f'"{program}", which is not installed on this machine'
        )
        return
    image = resolve(ref)
    assert image.cmd[0] == program


def test_unknown_image_is_a_pull_error() -> None:
    with pytest.raises(ImageNotFound) as err:
        resolve("example.com/nosuch/app:1.0")
    message = str(err.value)
    assert message.startswith(
        'Failed to pull image "example.com/nosuch/app:1.0": image not found in the kubelite image catalog; '
        "known images: "
    )
    assert "registry.k8s.io/e2e-test-images/agnhost" in message
    assert "busybox" in message


def test_user_catalog_adds_and_overrides(tmp_path: pathlib.Path) -> None:
    catalog = tmp_path / "images.yaml"
    catalog.write_text(
        """
myapp:
  command: ["/usr/bin/env"]
  args: ["--", "x"]
  env: {GREETING: hello, PORT: 8080}
  workingDir: /srv
  ports: [8080]
registry.example.com/team/tool:2:
  entrypoint: ["tool"]
busybox:
  cmd: ["echo", "overridden"]
"""
    )
    app = resolve("docker.io/library/myapp:any-tag", catalog)
    assert app.entrypoint == ["/usr/bin/env"]
    assert app.cmd == ["--", "x"]
    assert app.env == {"PATH": DEFAULT_PATH, "GREETING": "hello", "PORT": "8080"}
    assert app.workdir == "/srv"
    assert app.ports == (8080,)
    assert resolve("registry.example.com/team/tool:2", catalog).entrypoint == ["tool"]
    with pytest.raises(ImageNotFound):
        resolve("registry.example.com/team/tool:3", catalog)
    assert resolve("busybox:1.36", catalog).cmd == ["echo", "overridden"]


def test_user_catalog_paths_are_its_programs_and_what_it_names(tmp_path: pathlib.Path) -> None:
    # What a catalog container's own root shows of the host (kubelite.node.isolation).
    bin_dir = tmp_path / "app" / "bin"
    bin_dir.mkdir(parents=True)
    interpreter = tmp_path / "interp" / "run"
    interpreter.parent.mkdir()
    interpreter.write_text("#!/bin/sh\n")
    interpreter.chmod(0o755)
    script = bin_dir / "serve"
    script.write_text(f"#!{interpreter}\n")
    script.chmod(0o755)
    catalog = tmp_path / "images.yaml"
    catalog.write_text(f"""
app:
  command: [serve]
  env: {{PATH: "{bin_dir}:/usr/bin:/bin"}}
  paths: [/srv/data]
  writablePaths: [/var/lib/app]
plain:
  command: [sh, -c, "true"]
""")
    app = resolve("app", catalog)
    # Its PATH directory, its interpreter's, /bin/sh's (system directories) and what it names.
    assert app.paths[:2] == (str(bin_dir), str(interpreter.parent)) and app.paths[-1] == "/srv/data"
    assert all(p.startswith(("/usr", "/bin")) for p in app.paths[2:-1])
    assert app.writable_paths == ("/var/lib/app",)
    plain = resolve("plain", catalog)
    assert plain.writable_paths == () and all(p.startswith(("/usr", "/bin")) for p in plain.paths)


def test_image_id_is_stable_and_per_reference() -> None:
    a = resolve("registry.k8s.io/e2e-test-images/agnhost:2.53")
    assert a.image_id == resolve("registry.k8s.io/e2e-test-images/agnhost:2.53").image_id
    assert a.image_id.startswith("registry.k8s.io/e2e-test-images/agnhost@sha256:")
    assert a.image_id != resolve("registry.k8s.io/e2e-test-images/agnhost:2.40").image_id
