"""--download against an HTTP server on 127.0.0.1 started here (nothing touches the internet):
checksum verified, resumed with HTTP Range after an interruption, written atomically."""

import dataclasses
import hashlib
import http.server
import os
import threading

import pytest
from data_writers import (CIFAR_ARCHIVE, assert_user_error, data_env, gendd,  # noqa: F401
                          write_cifar_archive)

from gendd.data import checksums, load_dataset, registry
from gendd.data.download import download
from gendd.errors import GenddError


class Server:
    """Serves `files` (name -> bytes). `cut_after`: the next response stops after that many
    bytes of the body and drops the connection. `ranges`: honour Range headers."""

    def __init__(self):
        self.files, self.requests, self.cut_after, self.ranges = {}, [], None, True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start, rng = 0, self.headers.get("Range")
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def md5(data):
    return hashlib.md5(data).hexdigest()


def test_interrupted_download_resumes_with_range(tmp_path, server):
    data = os.urandom(300_000)
    server.files["f.bin"] = data
    server.cut_after = 120_000
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(GenddError, match="download failed.*120000 bytes kept.*run the same command again"):
        download(f"{server.url}/f.bin", dest, md5(data))
    assert not dest.exists() and (tmp_path / "d" / "f.bin.part").stat().st_size == 120_000
    assert download(f"{server.url}/f.bin", dest, md5(data)) == dest
    assert dest.read_bytes() == data and not (tmp_path / "d" / "f.bin.part").exists()
    assert server.requests[-1] == ("/f.bin", "bytes=120000-")
    # Already there with the right md5: nothing is fetched.
    n = len(server.requests)
    download(f"{server.url}/f.bin", dest, md5(data))
    assert len(server.requests) == n


def test_a_server_without_ranges_restarts_and_a_bad_checksum_leaves_nothing(tmp_path, server):
    data = os.urandom(50_000)
    server.files["f.bin"] = data
    server.ranges = False
    (tmp_path / "f.bin.part").write_bytes(b"stale partial data")
    download(f"{server.url}/f.bin", tmp_path / "f.bin", md5(data))
    assert (tmp_path / "f.bin").read_bytes() == data
    with pytest.raises(GenddError, match="md5 .* expected 0+ .*removed"):
        download(f"{server.url}/f.bin", tmp_path / "g.bin", "0" * 32)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()
    with pytest.raises(GenddError, match="download failed.*Not Found"):
        download(f"{server.url}/missing.bin", tmp_path / "h.bin", "0" * 32)


def test_cli_download_from_a_mirror_then_extract_and_load(tmp_path, server, monkeypatch):
    archive = write_cifar_archive(tmp_path / "src", "cifar-10")
    digest = checksums.md5_of(archive)  # the test archive's md5 plays the official one
    monkeypatch.setitem(checksums.OFFICIAL_MD5, archive.name, digest)
    info = registry.DATASETS["cifar-10"]
    monkeypatch.setitem(registry.DATASETS, "cifar-10", dataclasses.replace(
        info, remote=(dataclasses.replace(info.remote[0], md5=digest),)))
    server.files[archive.name] = archive.read_bytes()
    server.cut_after = 5000
    root = tmp_path / "data"
    args = ("datasets", "--download", "cifar-10", "--data-root", root, "--mirror", server.url)
    assert_user_error(gendd(*args), "download failed", "run the same command again to resume")
    r = gendd(*args, "--extract")
    assert r.exit_code == 0, r.output
    assert (root / "cifar-10" / CIFAR_ARCHIVE["cifar-10"]).read_bytes() == archive.read_bytes()
    assert (root / "cifar-10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert server.requests[-1][1] == "bytes=5000-"
    assert load_dataset("cifar-10", root).train_images.shape == (200, 3, 32, 32)


def test_download_needs_a_destination_and_a_known_remote(tmp_path):
    assert_user_error(gendd("datasets", "--download", "cifar-10"), "--data-root DIR, or set GENDD_DATA")
    assert_user_error(gendd("datasets", "--download", "imagefolder", "--data-root", tmp_path),
                      "imagefolder cannot be downloaded")
    assert_user_error(gendd("datasets", "--mirror", "http://x"), "--mirror and --extract go with --download")
