"""bin/fetch-nginx takes the revision of the nginx line production runs (gatewayImage's) that the
Debian suite carries, whatever it is, and records which one was unpacked. Run here without a
network (its own empty network namespace), so nothing reaches Debian: a root it may use is used as
it is, and anything else would need a download, which fails."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT
from nginx_harness import nginx

FETCHED = REPO_ROOT / ".cache" / "nginx-current"


def fake_root(directory, stamp: str):
    """A fetch-nginx directory whose root is the real one but for its stamp."""
    root = directory / "root"
    root.mkdir(parents=True)
    (root / "usr").symlink_to(FETCHED / "root" / "usr")
    (root / ".fetch-nginx").write_text(stamp + "\nnginx 0\n")
    return directory


def repository(directory, gateway_image: str):
    """A copy of bin/fetch-nginx beside a Pulumi.yaml whose base gatewayImage is `gateway_image`."""
    (directory / "bin").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "bin" / "fetch-nginx", directory / "bin" / "fetch-nginx")
    text = re.sub(r"(?m)^  gatewayImage: .*$", f"  gatewayImage: {gateway_image}", (REPO_ROOT / "Pulumi.yaml").read_text())
    (directory / "Pulumi.yaml").write_text(text)
    return directory / "bin" / "fetch-nginx"


def offline(script, fetch_dir) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-n", str(script)], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FETCH_NGINX_DIR": str(fetch_dir)},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def fetched():
    nginx()  # the real root must be there (bin/test fetches it first)


def test_a_new_revision_of_the_line_is_used_as_it_is(tmp_path):
    directory = fake_root(tmp_path / "fetched", "nginx=1.30.9-3 suite=forky extra=")
    result = offline(REPO_ROOT / "bin" / "fetch-nginx", directory)
    assert result.returncode == 0, result.stderr
    assert "(Debian 1.30.9-3 from forky, the 1.30 line of gatewayImage nginx:1.30-alpine)" in result.stdout


@pytest.mark.parametrize("stamp", ["nginx=1.32.0-1 suite=forky extra=", "nginx=1.30.6-2 suite=sid extra=", "nginx=1.3.0-1 suite=forky extra="])
def test_a_root_of_another_line_suite_or_extras_is_fetched_again(tmp_path, stamp):
    directory = fake_root(tmp_path / "fetched", stamp)
    result = offline(REPO_ROOT / "bin" / "fetch-nginx", directory)
    assert result.returncode == 1 and "could not download the package lists of Debian forky" in result.stderr, result.stderr


def test_the_line_follows_the_gateway_image(tmp_path):
    script = repository(tmp_path / "repo", "nginx:1.32-alpine")
    result = offline(script, fake_root(tmp_path / "fetched", "nginx=1.30.6-2 suite=forky extra="))
    assert result.returncode == 1 and "could not download" in result.stderr, result.stderr  # 1.30 is not the line any more
    script = repository(tmp_path / "repo2", "nginx:1.32.1-alpine@sha256:" + "a" * 64)
    assert offline(script, fake_root(tmp_path / "fetched2", "nginx=1.32.1-1 suite=forky extra=")).returncode == 0


@pytest.mark.parametrize("image", ["nginx:stable-alpine", "nginx", "nginx@sha256:" + "a" * 64])
def test_a_gateway_image_without_a_line_is_refused_clearly(tmp_path, image):
    result = offline(repository(tmp_path / "repo", image), tmp_path / "fetched")
    assert result.returncode == 1 and "cannot read the nginx line from gatewayImage" in result.stderr, result.stderr


def test_the_revision_the_tests_run_is_recorded_and_is_the_binary(pytestconfig):
    stamp = (FETCHED / "root" / ".fetch-nginx").read_text().splitlines()[0]
    revision = re.fullmatch(r"nginx=(\S+) suite=\S+ extra=\S*", stamp)[1]  # type: ignore[index]
    version = subprocess.run([nginx(), "-v"], capture_output=True, text=True, timeout=30).stderr
    assert f"nginx/{revision.split('-')[0]}" in version
    from conftest import pytest_report_header

    assert pytest_report_header(pytestconfig) == f"nginx under test: {stamp}"
