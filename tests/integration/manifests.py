"""Manifests shared by the integration tests."""

from __future__ import annotations


def pod(name: str = "web", node: str = "edge-1", cm: str = "web-config", secret: str = "web-secret",
        image: str = "nginx:1.27") -> str:  # fmt: skip
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  nodeName: {node}
  containers:
  - name: app
    image: {image}
    envFrom:
    - configMapRef:
        name: {cm}
    volumeMounts:
    - name: creds
      mountPath: /etc/creds
  volumes:
  - name: creds
    secret:
      secretName: {secret}
"""


def configmap(name: str = "web-config", value: str = "1") -> str:
    return f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: default
data:
  LEVEL: "{value}"
"""


def secret(name: str = "web-secret") -> str:
    return f"""
apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: default
type: Opaque
data:
  password: c2VjcmV0
"""


def bundle(**kw: str) -> str:
    return "\n---\n".join([configmap(), secret(), pod(**kw)])
