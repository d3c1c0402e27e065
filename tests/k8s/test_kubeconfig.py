"""Reading kubeconfigs without the generated client, and handing the rest to the official loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudhub.k8s.kubeconfig import load_credentials
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(20)


def write(path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "http://127.0.0.1:1/"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_token_and_the_server_are_read(tmp_path: Path) -> None:
    """A plain token user: the server without its trailing slash, the token as given."""
    creds = load_credentials(write(tmp_path / "kc", {"token": "abc"}))
    assert creds.host == "http://127.0.0.1:1" and creds.ssl is None and creds.token() == "abc"


def test_a_token_file_is_found_next_to_the_kubeconfig(tmp_path: Path) -> None:
    """``tokenFile`` is relative to the kubeconfig's directory, as kubectl reads it."""
    (tmp_path / "token").write_text("from-file\n")
    creds = load_credentials(write(tmp_path / "kc", {"tokenFile": "token"}))
    assert creds.token() == "from-file"


def test_https_without_a_ca_trusts_the_system_and_insecure_skips_checks(tmp_path: Path) -> None:
    """An https server gets a TLS context; insecure-skip-tls-verify turns verification off."""
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}
    creds = load_credentials(write(tmp_path / "kc", {"token": "t"}, cluster))
    assert creds.ssl is not None and not creds.ssl.check_hostname


def test_a_missing_ca_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A CA path that does not exist: ConfigError naming the kubeconfig, one line."""
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": "nope.crt"}
    path = write(tmp_path / "kc", {"token": "t"}, cluster)
    with pytest.raises(ConfigError) as err:
        load_credentials(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_an_exec_plugin_goes_through_the_official_loader(tmp_path: Path) -> None:
    """A user with an exec plugin is read by the kubernetes package, whose token we use."""
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "from-plugin"},
    }
    script = tmp_path / "plugin.sh"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    script.chmod(0o755)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }
    creds = load_credentials(write(tmp_path / "kc", user))
    assert creds.host == "http://127.0.0.1:1" and creds.token() == "from-plugin"


def test_in_cluster_without_a_service_account_is_a_config_error() -> None:
    """The service host set but no token file (not in a pod): a ConfigError saying so."""
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(ConfigError, match="in-cluster"):
        load_credentials(None, environ=env)


def test_the_clusters_proxy_and_certificate_name_are_kept(tmp_path: Path) -> None:
    """``proxy-url`` and ``tls-server-name`` reach the connection's options."""
    cluster = {
        "server": "https://10.0.0.1:6443",
        "proxy-url": "http://proxy.example:3128",
        "tls-server-name": "kubernetes.default",
    }
    creds = load_credentials(write(tmp_path / "kc", {"token": "t"}, cluster))
    assert creds.proxy == "http://proxy.example:3128"
    assert creds.server_name == "kubernetes.default"
